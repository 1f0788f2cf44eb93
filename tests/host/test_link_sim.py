"""The LinkClient against DeviceLink on Amaranth's simulator: identify, error answers, tags,
retries and recovery after damaged or partial frames."""

import pytest

from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.host.link import DeviceError, LinkClient, LinkTimeout
from onebit.host.protocol import FrameDecoder, Opcode, Status, encode_args, encode_frame
from onebit.sim.link_transport import AmaranthLinkTransport

DEV = DeviceConfig(core=CoreConfig(rows=3, cols=5, lanes=16, max_k=300, max_t=40, max_n=700),
                   frame_bytes=64, act_words=400, weight_words=512, thresh_words=64,
                   result_beats=128)


def client(**kw):
    return LinkClient(AmaranthLinkTransport(DEV, **kw), timeout=20.0, retries=0)


def responses(transport, count):
    dec, frames = FrameDecoder(), []
    while len(frames) < count:
        frames += dec.feed(transport.read())
    return frames


def test_identify_reports_the_design():
    assert client().identify() == DEV


def test_bad_length_is_answered():
    c = client()
    with pytest.raises(DeviceError, match="IDENTIFY with BAD_LENGTH") as e:
        c.request(Opcode.IDENTIFY, b"x")
    assert e.value.status == Status.BAD_LENGTH
    assert c.identify() == DEV          # and the link still works


LAYER_DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    act_words=256, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))


def test_a_read_of_no_words_answers_no_data():
    """READ_RESULTS and READ_RESIDUAL with ``count`` 0 are answered OK with no data (they once
    sent bytes without end), and the link goes on."""
    c = LinkClient(AmaranthLinkTransport(LAYER_DEV), timeout=20.0, retries=0)
    assert c.request(Opcode.READ_RESULTS, offset=0, count=0) == b""
    assert c.request(Opcode.READ_RESIDUAL, offset=38, count=0) == b""
    assert c.request(Opcode.READ_RESIDUAL, offset=1, count=1) == bytes(4)
    assert c.identify() == LAYER_DEV


def test_bad_crc_is_answered_with_the_tag_and_dropped():
    transport = AmaranthLinkTransport(DEV)
    frame = bytearray(encode_frame(Opcode.RESET, encode_args(Opcode.RESET, tag=0x5A)))
    frame[-1] ^= 0x40
    transport.write(bytes(frame))
    (answer,) = responses(transport, 1)
    assert answer.opcode == Opcode.RESET.response
    assert answer.payload == bytes([Status.BAD_CRC, 0x5A])
    assert LinkClient(transport, timeout=20.0).request(Opcode.RESET) == b""


def test_a_late_answer_with_another_tag_is_skipped():
    transport = AmaranthLinkTransport(DEV)
    transport.write(encode_frame(Opcode.IDENTIFY, encode_args(Opcode.IDENTIFY, tag=0)))
    c = LinkClient(transport, timeout=20.0)
    assert c.identify() == DEV
    assert c.stats.stale == 1


def test_partial_frame_times_out_in_the_device():
    transport = AmaranthLinkTransport(DEV, timeout_cycles=64)
    transport.write(b"\x00\x13\x37" + encode_frame(Opcode.IDENTIFY, b"\x07")[:6])
    (answer,) = responses(transport, 1)
    assert answer.payload == bytes([Status.TIMED_OUT, 7])
    assert client().identify() == DEV


def test_retry_after_a_damaged_frame():
    transport = AmaranthLinkTransport(DEV)

    class Once:
        """Flips one bit of the first frame written."""
        done = False

        def write(self, data):
            if not self.done:
                data = bytearray(data)
                data[7] ^= 1
                self.done = True
            transport.write(bytes(data))

        read, drain, close = transport.read, transport.drain, transport.close

    c = LinkClient(Once(), timeout=20.0, retries=1)
    assert c.identify() == DEV
    assert (c.stats.retries, c.stats.damaged) == (1, 1)


def test_slow_device_times_out_instead_of_hanging():
    """Every read has a timeout: a device that has not answered in time raises LinkTimeout,
    and the link works again afterwards."""
    transport = AmaranthLinkTransport(DEV, cycles_per_read=5)
    c = LinkClient(transport, timeout=0.0, retries=0)
    with pytest.raises(LinkTimeout, match="no response to IDENTIFY within 0.0 s"):
        c.identify()
    c.timeout = 60.0
    assert c.identify() == DEV
