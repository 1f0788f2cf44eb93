"""Frame encoder and decoder: round trips, garbage, corruption and truncation (hypothesis)."""

import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from onebit.host.protocol import (
    MAX_PAYLOAD,
    START,
    FrameDecoder,
    FrameError,
    Opcode,
    encode_frame,
)

payloads = st.binary(max_size=300)


def drain(dec: FrameDecoder, wire: bytes) -> list:
    """Feed ``wire``, then resync (as a reader does on a timeout) until nothing is pending."""
    got = dec.feed(wire)
    while dec.pending:
        got += dec.resync()
    return got
opcodes = st.integers(0, 255)


@given(st.lists(st.tuples(opcodes, payloads), max_size=6), st.integers(1, 50))
def test_round_trip_in_any_chunking(frames, chunk):
    wire = b"".join(encode_frame(op, p) for op, p in frames)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(wire), chunk):
        got += dec.feed(wire[i:i + chunk])
    assert [(f.opcode, f.payload) for f in got] == frames
    assert dec.pending == 0 and dec.bad_crc == 0


@given(st.binary(max_size=100).filter(lambda g: START not in g), opcodes, payloads)
def test_garbage_before_a_frame_is_skipped(garbage, op, payload):
    dec = FrameDecoder()
    got = dec.feed(garbage + encode_frame(op, payload))
    assert [(f.opcode, f.payload) for f in got] == [(op, payload)]
    assert dec.garbage == len(garbage)


@settings(max_examples=300)
@given(opcodes, payloads, st.data())
def test_any_single_or_burst_flip_is_detected(op, payload, data):
    """A CRC-32 detects every burst of up to 32 bits: no corrupted frame is ever accepted."""
    frame = bytearray(encode_frame(op, payload))
    bit = data.draw(st.integers(8, len(frame) * 8 - 1))      # not the start byte
    length = data.draw(st.integers(1, 32))
    for b in range(bit, min(bit + length, len(frame) * 8)):
        if b == bit or data.draw(st.booleans()):
            frame[b // 8] ^= 1 << (b % 8)
    dec = FrameDecoder()
    good = encode_frame(Opcode.IDENTIFY, b"next")
    got = drain(dec, bytes(frame) + good)
    assert [(f.opcode, f.payload) for f in got] == [(Opcode.IDENTIFY, b"next")]


@given(opcodes, payloads, st.data())
def test_truncated_frame_then_good_frame(op, payload, data):
    frame = encode_frame(op, payload)
    cut = data.draw(st.integers(1, len(frame) - 1))
    good = encode_frame(Opcode.RESET, b"ok")
    # Not truncated in effect when the next frame's first bytes are the missing ones (a CRC
    # byte equal to the start byte): the decoder then rightly sees the whole first frame.
    assume(not (frame[:cut] + good).startswith(frame))
    got = drain(FrameDecoder(), frame[:cut] + good)
    assert [(f.opcode, f.payload) for f in got] == [(Opcode.RESET, b"ok")]


def test_encode_rejects_what_does_not_fit():
    with pytest.raises(FrameError, match="opcode must be an integer in 0..255, not 256"):
        encode_frame(256)
    with pytest.raises(FrameError, match=f"exceeds the maximum of {MAX_PAYLOAD}"):
        encode_frame(1, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(FrameError, match="payload must be bytes, not str"):
        encode_frame(1, "text")


def test_fault_injection_counts():
    """Random faults on a stream of frames: every delivered frame is one that was sent."""
    rng = random.Random(7)
    sent = [(rng.randrange(256), bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
            for _ in range(300)]
    wire = bytearray()
    faults = 0
    for op, p in sent:
        f = bytearray(encode_frame(op, p))
        kind = rng.random()
        if kind < 0.1:
            f[rng.randrange(1, len(f))] ^= 1 << rng.randrange(8)
            faults += 1
        elif kind < 0.15:
            del f[rng.randrange(1, len(f))]
            faults += 1
        elif kind < 0.2:
            f = f[:rng.randrange(1, len(f))]
            faults += 1
        elif kind < 0.25:
            wire += bytes(rng.randrange(256) for _ in range(5))
            faults += 1
        wire += f
    got = drain(FrameDecoder(), bytes(wire))
    got_set = [(g.opcode, g.payload) for g in got]
    assert all(g in sent for g in got_set)           # never a frame that was not sent
    # Each fault loses its own frame and at most the next one (a cut frame swallows it).
    assert len(got_set) >= len(sent) - 2 * faults


def test_identify_reports_the_layer_engines_precisions():
    """IDENTIFY carries the engine's largest activation bits and its weight kinds (a mask);
    a mask with an unknown kind is refused, never read as something else."""
    import struct

    from onebit.host.device_config import DeviceConfig, LayerConfig
    from onebit.host.protocol import decode_identify, encode_identify

    dev = DeviceConfig(layer=LayerConfig())
    data = encode_identify(dev)
    assert data[-2:] == bytes([1, 0b01])
    back = decode_identify(data)
    assert back == dev and (back.layer.max_bits, back.layer.weight_kinds) == (1, ("binary",))
    assert encode_identify(DeviceConfig())[-2:] == b"\0\0"
    with pytest.raises(ValueError, match="unknown weight kinds in the mask 0x4"):
        decode_identify(data[:-1] + bytes([0b100]))
    with pytest.raises(ValueError, match="protocol version 4"):
        decode_identify(data[:4] + struct.pack("<B", 4) + data[5:])
