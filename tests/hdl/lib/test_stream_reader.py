# amaranth: UnusedElaboratable=no
"""The memory stream reader against the memory's words: every run's words in order, exactly,
with random backpressure, with and without the registered read (without it, the memory's own
output holds the word offered: no FIFO), from a memory of read latency 1 or 2 (its data passes
a register, as a block RAM's output register)."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator

from onebit.hdl.lib.stream_reader import MemoryStreamReader

DEPTH, WIDTH = 64, 12


@pytest.mark.parametrize("register_output, latency", [(True, 1), (False, 1), (True, 2)])
@pytest.mark.parametrize("p_ready", [1.0, 0.6, 0.2])
def test_reader_streams_runs_exactly(register_output, latency, p_ready):
    rng = random.Random(int(p_ready * 10) + register_output + 7 * latency)
    words = [rng.randrange(1 << WIDTH) for _ in range(DEPTH)]
    m = Module()
    m.submodules.mem = mem = memory.Memory(shape=WIDTH, depth=DEPTH, init=words)
    rd_port = mem.read_port()
    m.submodules.dut = dut = MemoryStreamReader(width=WIDTH, depth=DEPTH,
                                                register_output=register_output,
                                                latency=latency)
    rdata = rd_port.data
    if latency == 2:
        rdata = Signal(WIDTH)
        m.d.sync += rdata.eq(rd_port.data)
    m.d.comb += [rd_port.addr.eq(dut.raddr), rd_port.en.eq(dut.ren), dut.rdata.eq(rdata)]
    runs = [(0, 1), (5, 17), (63, 1), (10, 54), (0, 64), (30, 3)]
    got, cycles = [], []

    async def bench(ctx):
        for base, count in runs:
            ctx.set(dut.base, base)
            ctx.set(dut.count, count)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            run, n, offered = [], 0, None
            while ctx.get(dut.busy):
                ready = rng.random() < p_ready
                ctx.set(dut.o.ready, ready)
                valid, payload = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
                # A word offered and not taken stays offered, unchanged (stream rules).
                assert offered is None or (valid and payload == offered), (offered, payload)
                offered = payload if valid and not ready else None
                if ready and valid:
                    run.append(payload)
                await ctx.tick()
                n += 1
                assert n < 20 * count + 20, "the reader hangs"
            ctx.set(dut.o.ready, 0)
            got.append(run)
            cycles.append(n)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [words[b:b + c] for b, c in runs]
    if p_ready == 1.0:                     # one word a cycle once the reads are under way
        assert all(n <= c + 2 + latency for n, (_, c) in zip(cycles, runs, strict=True)), cycles


def test_reader_validation():
    with pytest.raises(ValueError, match="Reader width must be a positive integer, not 0"):
        MemoryStreamReader(width=0, depth=4)
    with pytest.raises(TypeError, match="register_output must be a bool, not 1"):
        MemoryStreamReader(width=8, depth=4, register_output=1)
    with pytest.raises(ValueError, match="Reader latency must be 1 or 2, not 3"):
        MemoryStreamReader(width=8, depth=4, latency=3)
    with pytest.raises(ValueError, match="Reader latency 2 needs register_output=True"):
        MemoryStreamReader(width=8, depth=4, latency=2, register_output=False)
