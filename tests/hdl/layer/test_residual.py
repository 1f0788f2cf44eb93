# amaranth: UnusedElaboratable=no
"""The residual unit against the golden model's scale-shift-add, with random idle cycles on its
input and backpressure on its output."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from onebit.hdl.layer.residual import ResidualUnit
from onebit.host.golden import _scale_shift
from onebit.sim.streams import get_all, put_all


def _cases(rng: np.random.Generator, beats: int, width: int, y_width: int):
    ylim = 1 << (y_width - 1)
    x = rng.integers(-32768, 32768, size=(beats, width))
    x[: beats // 4] = rng.choice([-32768, 32767, -32000, 32000], size=(beats // 4, width))
    y = rng.integers(-ylim, ylim, size=(beats, width))
    s = rng.integers(-128, 128, size=(beats, width))
    s[1::7] = rng.choice([-128, 127], size=s[1::7].shape)
    t = rng.integers(-32768, 32769, size=(beats, width))
    t[2::5] = rng.choice([-32768, 32768, 0], size=t[2::5].shape)
    return x, y, s, t


@pytest.mark.parametrize("width, y_width, shift, idle, stall", [
    (1, 10, 0, 0.0, 0.0), (4, 12, 4, 0.3, 0.3), (3, 16, 15, 0.5, 0.6), (8, 24, 7, 0.2, 0.1),
])
def test_residual_matches_golden(width, y_width, shift, idle, stall):
    rng = np.random.default_rng(width * 100 + y_width)
    beats = 300
    x, y, s, t = _cases(rng, beats, width, y_width)
    want = np.stack([_scale_shift(x[b], y[b], s[b], shift) for b in range(beats)])
    want_bits = (want.astype(np.int64) >= t)
    dut = ResidualUnit(width=width, y_width=y_width)
    prng = random.Random(shift)
    got = []

    async def producer(ctx):
        ctx.set(dut.shift, shift)
        payloads = [{"x": list(map(int, x[b])), "y": list(map(int, y[b])),
                     "s": list(map(int, s[b])), "t": list(map(int, t[b])),
                     "last": int(b == beats - 1)} for b in range(beats)]
        await put_all(ctx, dut.i, payloads, rng=prng, idle=idle)

    async def consumer(ctx):
        got.extend(await get_all(ctx, dut.o, beats, rng=prng, stall=stall,
                                 convert=lambda p: ([int(v) for v in p.x], int(p.bits),
                                                    int(p.last))))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert np.array_equal(np.array([g[0] for g in got]), want)
    bits = np.array([[(g[1] >> c) & 1 for c in range(width)] for g in got])
    assert np.array_equal(bits, want_bits)
    assert [g[2] for g in got] == [0] * (beats - 1) + [1]


def test_residual_rejects_bad_parameters():
    with pytest.raises(ValueError, match="width must be an integer of at least 1, not 0"):
        ResidualUnit(width=0, y_width=8)
    with pytest.raises(ValueError, match="y_width must be at most 24"):
        ResidualUnit(width=2, y_width=30)
