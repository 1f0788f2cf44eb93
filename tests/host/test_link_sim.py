"""The host LinkClient against DeviceLink on Amaranth's simulator: identify, error answers,
and recovery after damaged or partial frames."""

import pytest

from onebit.host.core_config import CoreConfig
from onebit.host.link import DeviceError, LinkClient, LinkTimeout
from onebit.host.protocol import Opcode, Status, encode_frame
from onebit.sim.link_transport import AmaranthLinkTransport

CFG = CoreConfig(rows=3, cols=5, lanes=16, max_k=300, max_t=40, max_n=700,
                 weight_memory="ice40_spram")


def client():
    return LinkClient(AmaranthLinkTransport(CFG), timeout=20.0)


def test_identify_reports_the_design():
    assert client().identify() == CFG


def test_unknown_opcode_and_bad_length():
    c = client()
    with pytest.raises(DeviceError, match="device answered 0x42 with UNKNOWN_OPCODE") as e:
        c.request(0x42)
    assert e.value.status == Status.UNKNOWN_OPCODE
    with pytest.raises(DeviceError, match="IDENTIFY with BAD_LENGTH"):
        c.request(Opcode.IDENTIFY, b"x")
    assert c.identify() == CFG          # and the link still works


def test_bad_crc_is_answered_and_dropped_then_next_works():
    transport = AmaranthLinkTransport(CFG)
    c = LinkClient(transport, timeout=20.0)
    frame = bytearray(encode_frame(Opcode.RESET, b""))
    frame[-1] ^= 0x40
    transport.write(bytes(frame))
    with pytest.raises(DeviceError, match="RESET with BAD_CRC"):
        c.request(Opcode.RESET)        # the damaged frame's answer arrives first
    assert c.request(Opcode.RESET) == b""
    assert c.identify() == CFG


def test_garbage_and_partial_frame_before_a_command():
    transport = AmaranthLinkTransport(CFG, timeout_cycles=64)
    c = LinkClient(transport, timeout=20.0)
    transport.write(b"\x00\x13\x37" + encode_frame(Opcode.IDENTIFY)[:3])
    transport.read()                   # the partial frame times out in the device
    transport.read()
    assert c.identify() == CFG


def test_slow_device_times_out_instead_of_hanging():
    """Every read has a timeout: a device that has not answered in time raises LinkTimeout,
    and the link works again afterwards."""
    transport = AmaranthLinkTransport(CFG, cycles_per_read=5)
    c = LinkClient(transport, timeout=0.0)
    with pytest.raises(LinkTimeout, match="no response to IDENTIFY within 0.0 s"):
        c.identify()
    c.timeout = 60.0
    assert c.identify() == CFG
