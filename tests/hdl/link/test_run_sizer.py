"""RunSizer: a RUN's word counts, its regions and result beats checked against the stores, and
its latency, for random commands in and out of the stores."""

import random

import pytest

from onebit.hdl.link.run_sizer import RunSizer
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig
from onebit.sim.streams import simulate

DEV = DeviceConfig(core=CoreConfig(rows=3, cols=4, lanes=8, max_k=40, max_t=11, max_n=21),
                   act_words=30, weight_words=80, thresh_words=12, result_beats=20)


def expected(a: dict) -> tuple[int, int, bool]:
    """(activation words, weight words, beyond a store) of a RUN (``docs/host-link.md``)."""
    c = DEV.core
    kw = -(-a["k"] // c.lanes)
    beats = -(-a["n"] // c.cols) * (-(-a["t"] // c.rows) if a["flags"] else a["t"])
    over = (a["act_base"] + a["t"] * kw > DEV.act_words or
            a["weight_base"] + a["n"] * kw > DEV.weight_words or
            (a["flags"] and a["thresh_base"] + a["n"] > DEV.thresh_words) or
            beats > DEV.result_beats)
    return a["t"] * kw, a["n"] * kw, over


@pytest.mark.parametrize("seed", range(3))
def test_sizes_match_the_protocol(seed):
    rng = random.Random(seed)
    c = DEV.core
    dut = RunSizer(DEV)
    outcomes = set()

    async def bench(ctx):
        for _ in range(40):
            a = {"tag": 0, "op": rng.randrange(2), "flags": rng.randrange(2),
                 "t": rng.randint(1, c.max_t), "n": rng.randint(1, c.max_n),
                 "k": rng.randint(1, c.max_k),
                 "act_base": rng.choice([0, rng.randrange(40), 1 << 20]),
                 "weight_base": rng.choice([0, rng.randrange(90)]),
                 "thresh_base": rng.choice([0, rng.randrange(14), 1 << 30])}
            ctx.set(dut.args, a)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.sized):
                await ctx.tick()
                cycles += 1
            await ctx.tick()
            assert cycles == max(a["t"], a["n"]) + -(-a["n"] // c.cols) + 3
            p = ctx.get(dut.params)
            act, weight, over = expected(a)
            assert bool(ctx.get(dut.over)) == over
            assert (p.op, p.threshold, p.t, p.n, p.k) == (
                a["op"], a["flags"], a["t"], a["n"], a["k"])
            if not over:        # (the counts and bases fit their fields)
                assert (p.act_count, p.weight_count) == (act, weight)
                assert (p.act_base, p.weight_base) == (a["act_base"], a["weight_base"])
                if a["flags"]:
                    assert (p.thresh_base, p.thresh_count) == (a["thresh_base"], a["n"])
            outcomes.add(over)

    simulate(dut, bench)
    assert outcomes == {False, True}
