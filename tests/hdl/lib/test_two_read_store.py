# amaranth: UnusedElaboratable=no
"""The two-read stores: what a write leaves, both ports reading it a cycle later (the run
store the run of words that holds the word read, that word first) and holding their data while
not enabled; on ECP5, one copy of their words (the write shares port 0)."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.flow.synth import ff_count, synth_stats
from onebit.hdl.lib.run_read_store import RunReadStore
from onebit.hdl.lib.two_read_store import TwoReadStore


@pytest.mark.parametrize("words, depth", [(0, 48), (1, 48), (2, 48), (2, 47), (4, 48),
                                          (4, 45), (4, 32)])
@pytest.mark.parametrize("seed", [1, 2])
def test_reads_return_what_was_written(words, depth, seed):
    width = 20
    run = max(1, words)
    dut = TwoReadStore(width=width, depth=depth) if words == 0 else \
        RunReadStore(width=width, depth=depth, words=words)
    rng = random.Random(seed)
    model = [0] * depth
    checked = []

    async def bench(ctx):
        held = [[(0, 0)], [(0, 0)]]
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
                if en:      # the run holding word a, word a first (past the last: not checked)
                    words = [a - a % run + (a + j) % run for j in range(run)]
                    held[i] = [(j, model[w]) for j, w in enumerate(words) if w < depth]
            if "write" in ops:
                a, v = ops["write"]
                model[a] = v
            for i in range(2):
                if not write:         # (port 0's data after a write is undefined)
                    got = ctx.get(getattr(dut, f"rdata{i}"))
                    for j, v in held[i]:
                        assert got >> (j * width) & ((1 << width) - 1) == v, (i, j, got, v)
                    checked.append(i)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked.count(0) > 200 and checked.count(1) > 200


@pytest.mark.parametrize("make", [
    lambda w, d: TwoReadStore(width=w, depth=d),
    lambda w, d: RunReadStore(width=w, depth=d, words=2)])
@pytest.mark.parametrize("width, depth", [(0, 8), (8, 0), (8, -1)])
def test_sizes_are_checked(make, width, depth):
    with pytest.raises(ValueError, match="Store (width|depth) must be a positive integer"):
        make(width, depth)


@pytest.mark.parametrize("words", [0, 3, -2, True, 2.0])
def test_words_are_checked(words):
    with pytest.raises(ValueError, match="Words a read must be a power of two, not"):
        RunReadStore(width=8, depth=8, words=words)


@pytest.mark.synth
@pytest.mark.parametrize("words, blocks", [(0, 24), (2, 24), (4, 32)])
def test_one_copy_of_the_words_on_ecp5(words, blocks):
    """The 85F's parameter store at 4 columns (6144 words of 68 bits) in DP16KD blocks of
    1024 x 18 (their widest with both ports in use): 6 x 4 = 24 for the two-read store; a run
    store's banks of 6144 / R words, 3 x 4 each for R = 2 (24) and 2 x 4 for R = 4 (32), where
    a memory with separate write and read addresses takes 48; and no collision bypass in
    flip-flops (the run store's: the rotation's bits a port)."""
    store = TwoReadStore(width=68, depth=6144) if words == 0 else \
        RunReadStore(width=68, depth=6144, words=words)
    stats = synth_stats(store, "params", "ecp5")
    assert stats.get("DP16KD") == blocks
    assert ff_count(stats) < 20
