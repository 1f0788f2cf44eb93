# amaranth: UnusedElaboratable=no
"""The banked store against a list of words: writes, word reads and line reads in random order,
each read's data exactly ``latency`` cycles after it and held until the next read of either port
(they share the banks' read ports)."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.hdl.lib.banked_store import BankedStore

WIDTH, DEPTH = 10, 64


@pytest.mark.parametrize("banks", [1, 4, 8])
@pytest.mark.parametrize("latency", [1, 2])
def test_banked_store_reads_words_and_lines(banks, latency):
    rng = random.Random(banks * 10 + latency)
    dut = BankedStore(width=WIDTH, depth=DEPTH, banks=banks, latency=latency)
    words = [0] * DEPTH
    checked = []

    async def bench(ctx):
        expect = [None] * (latency - 1)       # reads in flight: data seen ``latency`` ticks on
        last = None                                   # the read whose data the port holds
        for _ in range(600):
            op = rng.random()
            ctx.set(dut.wen, 0)
            ctx.set(dut.ren, 0)
            ctx.set(dut.lren, 0)
            read = None
            if op < 0.3:
                a, v = rng.randrange(DEPTH), rng.randrange(1 << WIDTH)
                ctx.set(dut.waddr, a)
                ctx.set(dut.wdata, v)
                ctx.set(dut.wen, 1)
                words[a] = v
            elif op < 0.6:
                a = rng.randrange(DEPTH)
                ctx.set(dut.raddr, a)
                ctx.set(dut.ren, 1)
                read = ("word", words[a])
            elif op < 0.8:
                ln = rng.randrange(DEPTH // banks)
                ctx.set(dut.laddr, ln)
                ctx.set(dut.lren, 1)
                read = ("line", words[ln * banks:(ln + 1) * banks])
            await ctx.tick()
            expect.append(read)
            due = expect.pop(0)
            last = due or last
            # The two ports share the banks: each holds its data until the next read of either.
            if last is not None and last[0] == "word":
                assert ctx.get(dut.rdata) == last[1]
                checked.append(last)
            elif last is not None:
                got = ctx.get(dut.ldata)
                assert [(got >> (i * WIDTH)) & ((1 << WIDTH) - 1)
                        for i in range(banks)] == last[1]
                checked.append(last)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 200


def test_banked_store_validation():
    with pytest.raises(ValueError, match="Bank count must be a power of two, not 3"):
        BankedStore(width=8, depth=16, banks=3)
    with pytest.raises(ValueError, match="Store read latency must be 1 or 2, not 0"):
        BankedStore(width=8, depth=16, banks=2, latency=0)


@pytest.mark.parametrize("latency", [1, 2])
def test_banked_store_line_mode_reads_laddr_every_cycle(latency):
    """Under ``lmode`` each cycle's ``ldata`` is the line at ``laddr`` ``latency`` cycles before,
    whatever the word port asks; with ``lmode`` low the word port reads as usual."""
    rng = random.Random(latency)
    banks = 4
    dut = BankedStore(width=WIDTH, depth=DEPTH, banks=banks, latency=latency, line_mode=True)
    words = [rng.randrange(1 << WIDTH) for _ in range(DEPTH)]
    checked = []

    def line(ln):
        return words[ln * banks:(ln + 1) * banks]

    async def bench(ctx):
        for a, v in enumerate(words):
            ctx.set(dut.waddr, a)
            ctx.set(dut.wdata, v)
            ctx.set(dut.wen, 1)
            await ctx.tick()
        ctx.set(dut.wen, 0)
        expect = [None] * (latency - 1)
        for i in range(400):
            lmode = (i // 50) % 2 == 0
            ctx.set(dut.lmode, lmode)
            ln, a = rng.randrange(DEPTH // banks), rng.randrange(DEPTH)
            ctx.set(dut.laddr, ln)
            ctx.set(dut.raddr, a)
            ctx.set(dut.ren, rng.random() < 0.5)
            ren = ctx.get(dut.ren)
            await ctx.tick()
            expect.append(("line", line(ln)) if lmode else ("word", words[a]) if ren else None)
            due = expect.pop(0)
            if due is None:
                continue
            if due[0] == "line":
                got = ctx.get(dut.ldata)
                assert [(got >> (k * WIDTH)) & ((1 << WIDTH) - 1)
                        for k in range(banks)] == due[1]
            else:
                assert ctx.get(dut.rdata) == due[1]
            checked.append(due)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert sum(d[0] == "line" for d in checked) > 150
    assert sum(d[0] == "word" for d in checked) > 50


def test_banked_store_line_mode_validation():
    with pytest.raises(TypeError, match="line_mode must be a bool, not 1"):
        BankedStore(width=8, depth=16, banks=2, line_mode=1)
    assert "lmode" in BankedStore(width=8, depth=16, banks=2, line_mode=True).signature.members
