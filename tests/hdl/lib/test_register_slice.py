# amaranth: UnusedElaboratable=no
"""The register slice: every beat through once and in order under random idle cycles and
backpressure, a beat a cycle when nothing stalls, and no combinational path across it."""

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from onebit.hdl.lib.register_slice import RegisterSlice
from onebit.sim.streams import get_all, put_all


@pytest.mark.parametrize("idle, stall, seed", [
    (0.0, 0.0, 1), (0.5, 0.0, 2), (0.0, 0.5, 3), (0.3, 0.7, 4), (0.7, 0.3, 5),
])
def test_beats_pass_once_in_order_under_stalls(idle, stall, seed):
    layout = data.StructLayout({"value": 12, "last": 1})
    dut = RegisterSlice(layout)
    rng = random.Random(seed)
    sent = [{"value": rng.randrange(1 << 12), "last": int(i % 7 == 6)} for i in range(300)]
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, sent, rng=random.Random(seed + 100), idle=idle)

    async def consumer(ctx):
        got.extend(await get_all(ctx, dut.o, len(sent), rng=random.Random(seed + 200),
                                 stall=stall,
                                 convert=lambda p: {"value": p.value, "last": p.last}))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-6 * 3000)
    assert got == sent


def test_full_throughput_and_one_cycle_latency():
    dut = RegisterSlice(8)
    cycles = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        out = []
        for n in range(40):
            ctx.set(dut.i.payload, n)
            assert ctx.get(dut.i.ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out.append(payload)
        ctx.set(dut.i.valid, 0)
        _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
        out.append(payload)
        cycles["out"] = out

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert cycles["out"] == list(range(40))


def test_no_combinational_path_across():
    dut = RegisterSlice(8)

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        await ctx.tick()                   # one beat in the output register
        ctx.set(dut.i.payload, 6)
        await ctx.tick()                   # the output stalls: the second beat parks
        assert ctx.get(dut.o.valid) and not ctx.get(dut.i.ready)
        for ready in (1, 0, 1):            # the output's ready does not reach i.ready ...
            ctx.set(dut.o.ready, ready)
            assert not ctx.get(dut.i.ready)
        for valid in (0, 1, 0):            # ... and the input's valid does not reach o.valid
            ctx.set(dut.i.valid, valid)
            assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 5
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        assert ctx.get(dut.o.payload) == 6 and ctx.get(dut.i.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("shape", ["wide", None, 1.5])
def test_a_non_shape_is_refused(shape):
    with pytest.raises(TypeError, match=r"RegisterSlice shape must be a shape-castable, not"):
        RegisterSlice(shape)
