# amaranth: UnusedElaboratable=no
"""The two-read stores: what a write leaves, both ports reading it a cycle later (the pair
store two consecutive words) and holding their data while not enabled; on ECP5, one copy of
their words (the write shares port 0)."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.flow.synth import ff_count, synth_stats
from onebit.hdl.lib.pair_read_store import PairReadStore
from onebit.hdl.lib.two_read_store import TwoReadStore


@pytest.mark.parametrize("store, depth", [(TwoReadStore, 48), (PairReadStore, 48),
                                          (PairReadStore, 47), (PairReadStore, 24)])
@pytest.mark.parametrize("seed", [1, 2])
def test_reads_return_what_was_written(store, depth, seed):
    width = 20
    pairs = store is PairReadStore
    dut = store(width=width, depth=depth)
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
                a = rng.randrange(depth - 1 if pairs else depth)     # (a + 1 a word too)
                ctx.set(getattr(dut, f"raddr{i}"), a)
                ctx.set(getattr(dut, f"ren{i}"), en)
                ops[i] = (en, a)
            await ctx.tick()
            for i in range(2):
                en, a = ops[i]
                if en:
                    held[i] = model[a] | (model[a + 1] << width if pairs else 0)
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


@pytest.mark.parametrize("store", [TwoReadStore, PairReadStore])
@pytest.mark.parametrize("width, depth", [(0, 8), (8, 0), (8, -1)])
def test_sizes_are_checked(store, width, depth):
    with pytest.raises(ValueError, match="Store (width|depth) must be a positive integer"):
        store(width=width, depth=depth)


@pytest.mark.synth
@pytest.mark.parametrize("store, blocks", [(TwoReadStore, 20), (PairReadStore, 24)])
def test_one_copy_of_the_words_on_ecp5(store, blocks):
    """The 85F's parameter store at 4 columns (5120 words of 68 bits) in DP16KD blocks of
    1024 x 18 (their widest with both ports in use): 5 x 4 = 20 for the two-read store, 2 x
    3 x 4 = 24 for the pair store's two banks of 2560 words, where a memory with separate write
    and read addresses takes 40; and no collision bypass in flip-flops (the pair store's: a
    parity bit a port)."""
    stats = synth_stats(store(width=68, depth=5120), "params", "ecp5")
    assert stats.get("DP16KD") == blocks
    assert ff_count(stats) < 20
