# amaranth: UnusedElaboratable=no
"""The two-read store: what a write leaves, both ports reading it a cycle later and holding
their data while not enabled; on ECP5, one copy of its words (the write shares port 0)."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.flow.synth import ff_count, synth_stats
from onebit.hdl.lib.two_read_store import TwoReadStore


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reads_return_what_was_written(seed):
    width, depth = 20, 48
    dut = TwoReadStore(width=width, depth=depth)
    rng = random.Random(seed)
    model = [0] * depth
    checked = []

    async def bench(ctx):
        held = [0, 0]
        for _ in range(600):
            write = rng.random() < 0.3
            ops = {}
            if write:
                a, v = rng.randrange(depth), rng.randrange(1 << width)
                ctx.set(dut.waddr, a)
                ctx.set(dut.wdata, v)
                ctx.set(dut.wen, 1)
                ops["write"] = (a, v)
            else:
                ctx.set(dut.wen, 0)
            for i in range(2):
                # (No read in a cycle that writes: the store's contract.)
                en = not write and rng.random() < 0.6
                a = rng.randrange(depth)
                ctx.set(getattr(dut, f"raddr{i}"), a)
                ctx.set(getattr(dut, f"ren{i}"), en)
                ops[i] = (en, a)
            await ctx.tick()
            for i in range(2):
                en, a = ops[i]
                if en:
                    held[i] = model[a]
            if "write" in ops:
                a, v = ops["write"]
                model[a] = v
            for i in range(2):
                if not write:         # (port 0's data after a write is undefined)
                    got = ctx.get(getattr(dut, f"rdata{i}"))
                    assert got == held[i], (i, got, held[i])
                    checked.append(i)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked.count(0) > 200 and checked.count(1) > 200


@pytest.mark.parametrize("width, depth", [(0, 8), (8, 0), (8, -1)])
def test_sizes_are_checked(width, depth):
    with pytest.raises(ValueError, match="Store (width|depth) must be a positive integer"):
        TwoReadStore(width=width, depth=depth)


@pytest.mark.synth
def test_one_copy_of_the_words_on_ecp5():
    """The 85F's parameter store at 4 columns (5120 words of 68 bits): 20 DP16KD (5120 x 68
    in 1024 x 18 blocks), where a memory with separate write and read addresses takes 40, and
    no collision bypass in flip-flops."""
    stats = synth_stats(TwoReadStore(width=68, depth=5120), "params", "ecp5")
    assert stats.get("DP16KD") == 20
    assert ff_count(stats) < 20
