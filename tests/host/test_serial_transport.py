"""The serial transport over a real pseudo-terminal, with the simulated device on the far end:
the same driver as for simulation, through pyserial and the kernel's tty layer."""

import os
import select
import threading

import numpy as np
import pytest

from onebit.host import Accelerator
from onebit.host.core_config import CoreConfig, Op
from onebit.host.core_streams import expected_gemm
from onebit.host.device_config import DeviceConfig
from onebit.host.serial_transport import SerialTransport
from onebit.sim.link_transport import AmaranthLinkTransport

DEV = DeviceConfig(core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=4, max_n=8),
                   frame_bytes=16, act_words=16, weight_words=32, thresh_words=8,
                   result_beats=16)


@pytest.fixture
def board():
    """A pty whose far end is DeviceLink on Amaranth's simulator (a board on /dev/pts/N)."""
    master, slave = os.openpty()
    device = AmaranthLinkTransport(DEV, cycles_per_read=200)
    stop = threading.Event()

    def bridge():
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0)
            if ready:
                device.write(os.read(master, 4096))
            out = device.read()
            if out:
                os.write(master, out)

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    yield os.ttyname(slave)
    stop.set()
    thread.join()
    os.close(master)
    os.close(slave)


def test_accelerator_over_a_serial_port(board):
    with Accelerator.open(f"serial://{board}?baud=3000000", timeout=30) as acc:
        assert acc.config == DEV
        rng = np.random.default_rng(2)
        x, w = rng.integers(0, 2, (5, 30)), rng.integers(0, 2, (6, 30))
        np.testing.assert_array_equal(acc.linear(x, w), expected_gemm(Op.XOR, x, w)[0])


def test_serial_transport_checks_its_baud_rate():
    with pytest.raises(ValueError, match="baud must be an integer in 300..12000000, not 0"):
        SerialTransport("/dev/null", baud=0)
