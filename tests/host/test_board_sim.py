"""The device of each board's bitstream, simulated: ``Accelerator.open("sim", board=...)``
elaborates ``DeviceLink`` for the board's platform, so what runs is the family's variant that
the build synthesises (iCE40: the core's counters in SB_MAC16 blocks, the weight store in SPRAM,
the identify ROM in block RAM, the unstaged store write; ECP5: carry-chain counts in CCU2C
cells, operand copies in TRELLIS_FF cells), on Icarus with Yosys's cell models and random
stalls on the link's streams. Results are compared exactly with the golden model."""

import math

import numpy as np
import pytest

from onebit.flow.boards import board
from onebit.host import Accelerator
from onebit.host.core_config import Op
from onebit.host.core_streams import expected_gemm
from onebit.host.protocol import COUNTERS

GEMM_BOARDS = ["icebreaker", "ulx3s-25f"]


@pytest.fixture(scope="module", params=GEMM_BOARDS)
def acc(request):
    with Accelerator.open("sim", simulator="icarus", board=request.param, timeout=600) as a:
        yield request.param, a


def test_the_device_is_the_boards(acc):
    name, a = acc
    assert a.config == board(name).device


@pytest.mark.parametrize("t,n,k", [(1, 1, 1), (5, 9, 70), (7, 3, 200)])
def test_linear_matches_golden(acc, t, n, k):
    _, a = acc
    rng = np.random.default_rng(t * 1000 + n * 10 + k)
    x, w = rng.integers(0, 2, (t, k)), rng.integers(0, 2, (n, k))
    ints, _ = expected_gemm(Op.XOR, x, w, None)
    np.testing.assert_array_equal(a.linear(x, w), ints)
    thr = rng.integers(-k, k + 2, n)
    thr[0], thr[-1] = -k, k + 1                  # the ends of the range
    _, bits = expected_gemm(Op.XOR, x, w, thr)
    np.testing.assert_array_equal(a.linear(x, w, thr), bits)


def test_counters_describe_the_last_run(acc):
    # On the iCEBreaker the core's counters are SB_MAC16 accumulators: their counts and their
    # clear at the next RUN are checked here, inside the whole device.
    name, a = acc
    c = board(name).device.core
    rng = np.random.default_rng(3)
    for t, n, k in [(5, 3, 40), (3, 2, 17)]:
        a.linear(rng.integers(0, 2, (t, k)), rng.integers(0, 2, (n, k)))    # one RUN
        got = a.counters()
        assert list(got) == list(COUNTERS)
        tiles = math.ceil(t / c.rows) * math.ceil(n / c.cols)
        assert got["core_active"] == tiles * math.ceil(k / c.lanes)
        assert got["core_busy"] >= got["core_active"] + got["core_stall"]
        assert got["link_frames"] > 0 and got["link_uptime"] > got["link_exec"] > 0


@pytest.mark.slow
def test_the_demo_runs_a_model_on_the_85f_device(capsys):
    # The ULX3S-85F's device has the layer engine at the shipped model's precision (3-bit
    # activations): `onebit demo --board ulx3s-85f` runs the shipped model, whole, on the ECP5
    # variant of the gateware (a few minutes on Verilator with its build) and checks its tokens
    # against the golden model.
    from onebit.cli.main import main

    assert main(["demo", "--board", "ulx3s-85f", "--simulator", "verilator",
                 "--tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "as built for the ULX3S (ECP5 LFE5U-85F) on verilator" in out
    assert "precision: layer 0 A=3 binary" in out
    assert "bit-exact with the golden model: yes (3 tokens" in out
    assert "projected on ulx3s-85f at 60.0 MHz" in out


def test_board_options_are_checked():
    with pytest.raises(ValueError, match="unknown board 'nosuch'; boards: icebreaker"):
        Accelerator.open("sim", simulator="icarus", board="nosuch")
    with pytest.raises(ValueError, match="needs its family's primitive cells: use "
                                         "simulator='icarus' or 'verilator'"):
        Accelerator.open("sim", board="icebreaker")
    with pytest.raises(TypeError, match=r"board 'icebreaker' fixes the device: give no config "
                                        r"or core options, not \['rows'\]"):
        Accelerator.open("sim", simulator="icarus", board="icebreaker", rows=2)


@pytest.mark.parametrize("args, message", [
    (["--board", "icebreaker"], "the icebreaker board's device has no layer engine (GEMM only); "
                                "the demo runs on ulx3s-85f"),
    (["--board", "nosuch"], "unknown board 'nosuch'; boards: icebreaker"),
    (["--board", "ulx3s-85f", "--simulator", "amaranth"], "--board needs the family's cell "
                                                          "models: use --simulator icarus"),
    (["--board", "ulx3s-85f", "--random", "--tokens", "200"],
     "8 prompt tokens + 200 exceed the board ulx3s-85f's KV cache of 128 tokens"),
])
def test_demo_board_arguments_are_checked(capsys, args, message):
    from onebit.cli.main import main

    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_model_beyond_the_boards_engine_is_refused(capsys, monkeypatch):
    # A board file whose engine computes fewer bits than the shipped model needs (the 85F's
    # device built with a one-bit engine): the demo refuses it before building anything.
    from dataclasses import replace

    from onebit.cli.main import main
    from onebit.flow import boards

    real = boards.board("ulx3s-85f")
    one_bit = replace(real, device=replace(real.device, layer=replace(real.device.layer,
                                                                       max_bits=1)))
    monkeypatch.setattr(boards, "board", lambda name: one_bit)
    assert main(["demo", "--board", "ulx3s-85f"]) == 2
    assert ("the board ulx3s-85f's layer engine computes activations of at most 1 bit; this "
            "model needs 3") in capsys.readouterr().err
