# amaranth: UnusedElaboratable=no
"""FrameReceiver against the host's encoder: good frames, garbage, bit flips, truncation,
timeouts, with random idle cycles on the byte stream and backpressure on the events."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.hdl.link.frame_rx import EventKind, FrameReceiver
from onebit.host.protocol import encode_frame


def run(wire: bytes, *, seed: int = 0, idle: float = 0.3, stall: float = 0.3,
        timeout: int = 64, gap_after: int | None = None):
    """Feed ``wire``; return the frames seen as (opcode, payload, ok, timed_out) tuples."""
    dut = FrameReceiver(timeout=timeout)
    rng = random.Random(seed)
    events = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx):
        for i, b in enumerate(wire):
            if gap_after is not None and i == gap_after:
                for _ in range(timeout + 5):
                    await ctx.tick()
            while rng.random() < idle:
                await ctx.tick()
            ctx.set(dut.i.payload, b)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        for _ in range(len(wire) * 6 + 4 * timeout + 200):
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                events.append((EventKind(p.kind), int(p.opcode), int(p.value), int(p.ok),
                               int(p.timed_out)))

    sim.add_testbench(feed)
    sim.add_testbench(collect, background=True)
    sim.run_until(1e-8 * (len(wire) * 6 + 4 * timeout + 200))
    frames, cur = [], None
    for kind, opcode, value, ok, to in events:
        if kind == EventKind.HEADER:
            assert cur is None, "HEADER inside a frame"
            cur = [opcode, value, bytearray()]
        elif kind == EventKind.DATA:
            cur[2].append(value)
        else:
            assert cur is not None and opcode == cur[0]
            if not to:
                assert len(cur[2]) == cur[1]
            frames.append((cur[0], bytes(cur[2]), ok, to))
            cur = None
    return frames


@pytest.mark.parametrize("seed", range(3))
def test_good_frames_with_garbage_between(seed):
    rng = random.Random(seed)
    sent = [(rng.randrange(256), bytes(rng.randrange(256) for _ in range(rng.randrange(12))))
            for _ in range(6)]
    wire = b"".join(bytes([0x00, 0x13]) + encode_frame(op, p) for op, p in sent)
    assert run(wire, seed=seed) == [(op, p, 1, 0) for op, p in sent]


def test_payload_flip_gives_end_not_ok_then_recovers():
    bad = bytearray(encode_frame(0x03, b"weights!"))
    bad[8] ^= 0x10
    wire = bytes(bad) + encode_frame(0x01, b"")
    damaged = bytes(bad[5:5 + 8])        # the payload as it arrived
    assert run(wire) == [(0x03, damaged, 0, 0), (0x01, b"", 1, 0)]


def test_header_flip_gives_no_event():
    bad = bytearray(encode_frame(0x03, b"abc"))
    bad[2] ^= 0x01                       # length
    wire = bytes(bad) + encode_frame(0x07, b"ok")
    assert run(wire)[-1] == (0x07, b"ok", 1, 0)
    assert all(f[2] == 0 for f in run(wire)[:-1])


def test_truncated_frame_times_out_then_next_frame_works():
    frame = encode_frame(0x04, bytes(range(10)))
    wire = frame[:9] + encode_frame(0x01, b"id")
    got = run(wire, gap_after=9, idle=0.0, stall=0.0)
    assert got == [(0x04, bytes(range(4)), 0, 1), (0x01, b"id", 1, 0)]


def test_timeout_validation():
    with pytest.raises(ValueError, match="Timeout must be an integer of at least 2 cycles"):
        FrameReceiver(timeout=1)
