"""FrameSender's bytes decode with the host's FrameDecoder, with idle cycles and backpressure."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.hdl.link.frame_tx import FrameSender
from onebit.host.protocol import FrameDecoder, encode_frame
from onebit.sim.streams import get_all, put_all


@pytest.mark.parametrize("seed", range(3))
def test_frames_match_the_host_encoder(seed):
    rng = random.Random(seed)
    frames = [(rng.randrange(256), bytes(rng.randrange(256) for _ in range(rng.randrange(20))))
              for _ in range(6)]
    expected = b"".join(encode_frame(op, p) for op, p in frames)
    dut = FrameSender()
    out = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def headers(ctx):
        await put_all(ctx, dut.header, [{"opcode": op, "length": len(p)} for op, p in frames],
                      rng=rng, idle=0.3)

    async def payload(ctx):
        await put_all(ctx, dut.data, [b for _, p in frames for b in p], rng=rng, idle=0.3)

    async def sink(ctx):
        out.extend(await get_all(ctx, dut.o, len(expected), rng=rng, stall=0.4))

    sim.add_testbench(headers)
    sim.add_testbench(payload)
    sim.add_testbench(sink)
    sim.run()
    assert bytes(out) == expected
    got = FrameDecoder().feed(bytes(out))
    assert [(f.opcode, f.payload) for f in got] == frames
