"""The host driver (``Accelerator``) against DeviceLink on each simulator (Amaranth's, and
Icarus and Verilator through cocotb with random idle cycles and backpressure on the byte
streams): exact results against the golden model with tiling in every dimension, counters,
and the device's checks. The same tests, the same driver, three simulators."""

import struct

import numpy as np
import pytest

from onebit.host import Accelerator, DeviceConfig, DeviceError, LinkError
from onebit.host.core_config import CoreConfig, Op
from onebit.host.core_streams import expected_gemm
from onebit.host.protocol import COUNTERS, Opcode, Status, encode_args, encode_frame

# A small device so that every tiling path runs: K > max_k, T beyond the activation store,
# N beyond the weight and result stores, data beyond one frame.
SMALL = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=40, max_t=6, max_n=20),
                     frame_bytes=16, act_words=20, weight_words=48, thresh_words=10,
                     result_beats=24)


# Verilator (a build of about 30 s) runs with `-m slow`.
@pytest.fixture(scope="module", params=["amaranth", "icarus",
                                        pytest.param("verilator", marks=pytest.mark.slow)])
def acc(request):
    with Accelerator.open("sim", simulator=request.param, config=SMALL, timeout=120) as a:
        yield a


def golden(x, w, thr=None):
    ints, bits = expected_gemm(Op.XOR, x, w, thr)
    return ints if thr is None else bits


def test_identify_reports_the_device(acc):
    assert acc.config == SMALL


@pytest.mark.parametrize("t,n,k", [(1, 1, 1), (3, 5, 13), (6, 20, 40), (13, 31, 40),
                                   (4, 7, 97)])
def test_linear_matches_golden(acc, t, n, k):
    rng = np.random.default_rng(t * 1000 + n * 10 + k)
    x = rng.integers(0, 2, (t, k))
    w = rng.integers(0, 2, (n, k))
    np.testing.assert_array_equal(acc.linear(x, w), golden(x, w))
    thr = rng.integers(-k, k + 2, n)
    thr[0], thr[-1] = -k, k + 1                  # the ends of the range
    bits = acc.linear(x.astype(bool), w, thr)
    assert bits.dtype == np.uint8
    np.testing.assert_array_equal(bits, golden(x, w, thr))


def test_thresholds_beyond_the_dot_range_are_exact(acc):
    """Any int64 threshold is valid (a real network's padded rows carry such values): beyond
    [-K, K + 1] it is always 1 or always 0, so the device's answer equals plain x . w >= t."""
    rng = np.random.default_rng(9)
    for k in (13, 97):                           # within max_k, and in segments beyond it
        x, w = rng.integers(0, 2, (5, k)), rng.integers(0, 2, (7, k))
        thr = np.array([-(1 << 62), -k - 1, 64511, k + 2, 1 << 62, 0, -70000])
        dots = (2 * x - 1) @ (2 * w - 1).T
        np.testing.assert_array_equal(acc.linear(x, w, thr), (dots >= thr).astype(np.uint8))


def test_counters_describe_the_last_run(acc):
    rng = np.random.default_rng(5)
    acc.linear(rng.integers(0, 2, (4, 40)), rng.integers(0, 2, (9, 40)))    # one RUN
    c = acc.counters()
    assert list(c) == list(COUNTERS)
    assert c["core_busy"] >= c["core_active"] > 0
    # 4 tokens x 9 outputs x 40 bits on 2 x 3 PEs of 8 lanes: 2 x 3 tiles of 5 chunks.
    assert c["core_active"] == 30
    assert c["link_frames"] > 0 and c["link_uptime"] > c["link_exec"] > 0
    before = c["link_frames"]
    assert acc.counters()["link_frames"] == before + 1
    acc.reset()
    assert acc.counters()["link_frames"] == 1  # cleared by RESET, then this frame


def request(acc, opcode, data=b"", **args):
    return acc.link.request(opcode, data, **args)


def run(acc, t, n, k, **kw):
    args = dict(op=0, flags=0, t=t, n=n, k=k, act_base=0, weight_base=0, thresh_base=0)
    args.update(kw)
    return request(acc, Opcode.RUN, **args)


def read(acc, beats):
    return request(acc, Opcode.READ_RESULTS, offset=0, count=beats)


@pytest.mark.parametrize("fields", [dict(t=0), dict(t=7), dict(n=21), dict(k=41), dict(k=0),
                                    dict(op=2), dict(flags=2),
                                    dict(act_base=19),                # 2 words from 19 > 20
                                    dict(weight_base=47, n=1),
                                    dict(flags=1, thresh_base=9, n=2),
                                    # bases beyond every store, whatever their low bits
                                    dict(act_base=1 << 20), dict(weight_base=0xFFFFFFFF),
                                    dict(flags=1, thresh_base=(1 << 31) + 1),
                                    dict(t=6, n=13),                  # 5 tiles x 6 > 24 beats
                                    # a high bit beyond the field's range, low bits in range
                                    # (the device does not store such bits: it must refuse)
                                    dict(t=(1 << 8) + 1), dict(n=(1 << 5) + 1),
                                    dict(k=(1 << 12) + 9), dict(op=0x80), dict(flags=0x81)])
def test_run_out_of_range_is_refused(acc, fields):
    args = dict(t=1, n=1, k=9)
    args.update(fields)
    with pytest.raises(DeviceError, match="RUN with OUT_OF_RANGE") as e:
        run(acc, **args)
    assert e.value.status == Status.OUT_OF_RANGE


def test_high_bits_of_offsets_and_counts_are_refused_and_unchecked_ones_ignored(acc):
    with pytest.raises(DeviceError, match="LOAD_WEIGHTS with OUT_OF_RANGE"):
        request(acc, Opcode.LOAD_WEIGHTS, b"\x00", offset=(1 << 16) + 3)
    with pytest.raises(DeviceError, match="LOAD_ACTIVATIONS with OUT_OF_RANGE"):
        request(acc, Opcode.LOAD_ACTIVATIONS, b"\x00", offset=1 << 31)
    run(acc, 1, 1, 8)
    with pytest.raises(DeviceError, match="READ_RESULTS with OUT_OF_RANGE"):
        request(acc, Opcode.READ_RESULTS, offset=1 << 24, count=1)
    with pytest.raises(DeviceError, match="READ_RESULTS with OUT_OF_RANGE"):
        request(acc, Opcode.READ_RESULTS, offset=0, count=(1 << 8) + 1)
    # A RUN without thresholds does not look at thresh_base, whatever its bits.
    xa, wa = 0b10110010, 0b01110110
    x = np.array([[(xa >> i) & 1 for i in range(8)]], np.uint8)
    w = np.array([[(wa >> i) & 1 for i in range(8)]], np.uint8)
    request(acc, Opcode.LOAD_ACTIVATIONS, bytes([xa]), offset=0)
    request(acc, Opcode.LOAD_WEIGHTS, bytes([wa]), offset=0)
    run(acc, 1, 1, 8, thresh_base=0xFFFFFFFF)
    assert struct.unpack("<3h", read(acc, 1))[0] == golden(x, w)[0, 0] == 2   # 5 agree, 3 differ


def test_loads_check_length_and_region_and_write_nothing_on_error(acc):
    x = np.ones((1, 8), np.uint8)
    w = np.zeros((1, 8), np.uint8)
    request(acc, Opcode.LOAD_ACTIVATIONS, b"\xff", offset=0)
    request(acc, Opcode.LOAD_WEIGHTS, b"\x00", offset=47)
    with pytest.raises(DeviceError, match="LOAD_WEIGHTS with OUT_OF_RANGE"):
        request(acc, Opcode.LOAD_WEIGHTS, b"\xff\xff", offset=47)    # one word too many
    with pytest.raises(DeviceError, match="LOAD_WEIGHTS with BAD_LENGTH"):
        request(acc, Opcode.LOAD_WEIGHTS, b"\xff" * 17, offset=0)    # beyond the frame buffer
    with pytest.raises(DeviceError, match="LOAD_THRESHOLDS with BAD_LENGTH"):
        request(acc, Opcode.LOAD_THRESHOLDS, b"\x01\x02\x03", offset=0)  # half a threshold
    run(acc, 1, 1, 8, weight_base=47)
    assert struct.unpack("<3h", read(acc, 1)) == (-8, 0, 0)         # word 47 is still 0x00
    assert golden(x, w)[0, 0] == -8


def test_damaged_frame_writes_nothing(acc):
    request(acc, Opcode.LOAD_ACTIVATIONS, b"\xff", offset=0)
    request(acc, Opcode.LOAD_WEIGHTS, b"\x0f", offset=0)
    frame = bytearray(encode_frame(Opcode.LOAD_WEIGHTS,
                                   encode_args(Opcode.LOAD_WEIGHTS, tag=0, offset=0) + b"\xff"))
    frame[-5] ^= 0x10                 # the data byte: CRC-32 fails
    transport = acc.link._transport
    transport.write(bytes(frame))
    transport.drain()
    run(acc, 1, 1, 8)
    assert struct.unpack("<3h", read(acc, 1))[0] == 0              # 0x0f still: 4 agree


def test_read_results_beyond_the_last_run_is_refused(acc):
    run(acc, 2, 1, 8)
    assert len(read(acc, 2)) == 2 * 6
    with pytest.raises(DeviceError, match="READ_RESULTS with OUT_OF_RANGE"):
        read(acc, 3)
    acc.reset()
    with pytest.raises(DeviceError, match="READ_RESULTS with OUT_OF_RANGE"):
        read(acc, 1)


def test_unknown_opcode_and_wrong_length(acc):
    transport = acc.link._transport
    transport.write(encode_frame(0x42, b"\x07"))
    from onebit.host.protocol import FrameDecoder
    dec = FrameDecoder()
    frames = []
    while not frames:
        frames = dec.feed(transport.read())
    assert frames[0].opcode == 0xC2 and frames[0].payload == bytes([Status.UNKNOWN_OPCODE, 7])
    transport.write(encode_frame(Opcode.IDENTIFY, b"\x09\x00"))
    frames = []
    while not frames:
        frames = dec.feed(transport.read())
    assert frames[0].payload == bytes([Status.BAD_LENGTH, 9])
    assert acc.link.identify() == SMALL


@pytest.mark.parametrize("x,w,thr,error,message", [
    (np.zeros((2, 8)), np.zeros((3, 8), int), None, TypeError, "x_bits must be an integer"),
    (np.full((2, 8), 2), np.zeros((3, 8), int), None, ValueError,
     r"x_bits must hold only 0 and 1, but x_bits\[0, 0\] = 2"),
    (np.zeros((2, 8), int), np.zeros((3, 9), int), None, ValueError,
     "x_bits has K = 8 but w_bits has K = 9"),
    (np.zeros(8, int), np.zeros((3, 8), int), None, ValueError, "x_bits must be 2-D"),
    (np.zeros((2, 8), int), np.zeros((3, 8, 1), int), None, ValueError, "w_bits must be 2-D"),
    (np.zeros((0, 8), int), np.zeros((3, 8), int), None, ValueError, "must not be empty"),
    (np.zeros((2, 8), int), np.zeros((3, 8), int), np.zeros(2, int), ValueError,
     r"thresholds must have shape \(3,\)"),
    (np.zeros((2, 8), int), np.zeros((3, 8), int), np.zeros(3), TypeError,
     "thresholds must be integers"),
    (np.zeros((2, 8), int), np.zeros((3, 8), int), np.array([0, 2 ** 64, 0], object),
     ValueError, r"thresholds holds 18446744073709551616, which does not fit int64"),
])
def test_bad_input_is_named(acc, x, w, thr, error, message):
    with pytest.raises(error, match=message):
        acc.linear(x, w, thr)


def test_open_rejects_bad_urls_and_options():
    with pytest.raises(ValueError, match="unknown device URL 'tcp://x'"):
        Accelerator.open("tcp://x")
    with pytest.raises(ValueError, match="simulator must be one of"):
        Accelerator.open("sim", simulator="ghdl")
    with pytest.raises(ValueError, match="baud must be an integer, not 'fast'"):
        Accelerator.open("serial:///dev/null?baud=fast")
    with pytest.raises(ValueError, match="unknown serial URL parameters"):
        Accelerator.open("serial:///dev/null?parity=E")
    with pytest.raises(ValueError, match="lanes must be a multiple of 8, not 4"):
        Accelerator.open("sim", lanes=4)
    with pytest.raises(ValueError, match="cannot run iCE40 SPRAM"):
        Accelerator.open("sim", config=DeviceConfig(weight_store="ice40_spram"))


def test_spram_weight_store_on_icarus():
    """The weight store in iCE40 SPRAM (SB_SPRAM256KA, Yosys's cell model)."""
    dev = DeviceConfig(core=CoreConfig(rows=2, cols=2, lanes=16, max_k=64, max_t=4, max_n=8),
                       frame_bytes=32, act_words=16, weight_words=64, thresh_words=8,
                       result_beats=16, weight_store="ice40_spram")
    rng = np.random.default_rng(9)
    x, w = rng.integers(0, 2, (6, 50)), rng.integers(0, 2, (11, 50))
    thr = rng.integers(-50, 52, 11)
    with Accelerator.open("sim", simulator="icarus", config=dev) as a:
        np.testing.assert_array_equal(a.linear(x, w), golden(x, w))
        np.testing.assert_array_equal(a.linear(x, w, thr), golden(x, w, thr))


def test_closed_accelerator_refuses_work():
    a = Accelerator.open("sim", config=SMALL)
    with a:
        pass
    with pytest.raises(LinkError, match="closed"):
        a.counters()
