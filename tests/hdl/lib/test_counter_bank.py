# amaranth: UnusedElaboratable=no
"""The counter bank against a list of integers: random increments, clears and reads."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.hdl.lib.counter_bank import CounterBank


@pytest.mark.parametrize("count, width, p_inc", [(3, 32, 0.5), (8, 32, 0.7), (13, 6, 0.9)])
def test_counter_bank_reads_exact_counts(count, width, p_inc):
    dut = CounterBank(count=count, width=width)
    rng = random.Random(count)
    seen = []

    async def bench(ctx):
        model = [0] * count
        due = {}                            # cycle -> (counter, count) a read must show then
        last_ren = False
        for cycle in range(3000):
            if cycle in due:
                addr, expect = due.pop(cycle)
                assert ctx.get(dut.rdata) == expect, f"counter {addr} at cycle {cycle}"
                seen.append(expect)
            inc = [rng.random() < p_inc for _ in range(count)]
            if cycle in (0, 1, 2):
                inc = [True] * count        # increments before the first write-back
            clear = rng.random() < 0.004
            ren = not last_ren and rng.random() < 0.45
            addr = rng.randrange(count)
            ctx.set(dut.inc, sum(b << i for i, b in enumerate(inc)))
            ctx.set(dut.clear, clear)
            ctx.set(dut.ren, ren)
            ctx.set(dut.raddr, addr)
            if clear:
                model = [0] * count
            else:
                model = [(v + b) % (1 << width) for v, b in zip(model, inc, strict=True)]
            if ren:                         # the counts after this cycle, LATENCY cycles later
                due[cycle + CounterBank.LATENCY] = (addr, model[addr])
            last_ren = ren
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) > 500 and max(seen) > min(50, (1 << width) // 2)   # reads saw real counts


def test_counter_bank_validation():
    with pytest.raises(ValueError, match="Counter count must be an integer of at least 3, not 2"):
        CounterBank(count=2)
    with pytest.raises(ValueError, match="Counter width must be a positive integer, not 0"):
        CounterBank(count=4, width=0)
