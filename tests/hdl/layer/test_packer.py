# amaranth: UnusedElaboratable=no
"""The result packer: the core's result tiles (in the core's documented beat order) back into
spec-packed activation rows, with random idle cycles and backpressure."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from onebit.hdl.layer.packer import ResultPacker
from onebit.host.core_config import CoreConfig
from onebit.host.packing import pack_bits
from onebit.sim.streams import put_all


def _beats(bits: np.ndarray, rows: int, cols: int) -> list[dict]:
    """The core's threshold beats for a (T, N) bit matrix: channel tiles outer, token tiles
    inner, bit r * C + c; tokens beyond T and channels beyond N are 0."""
    t, n = bits.shape
    beats = []
    for n0 in range(0, n, cols):
        for t0 in range(0, t, rows):
            v = 0
            for r in range(rows):
                for c in range(cols):
                    if t0 + r < t and n0 + c < n and bits[t0 + r, n0 + c]:
                        v |= 1 << (r * cols + c)
            beats.append({"ints": [0] * cols, "bits": v, "last": 0})
    beats[-1]["last"] = 1
    return beats


def _packer_with_memory(cfg: CoreConfig, depth: int, init: list[int]):
    """The packer writing into a memory of ``depth`` words with ``C``-bit write enables."""
    top = Module()
    top.submodules.packer = dut = ResultPacker(cfg, depth=depth)
    top.submodules.mem = mem = memory.Memory(shape=cfg.lanes, depth=depth, init=init)
    wp = mem.write_port(granularity=cfg.cols)
    top.d.comb += [wp.addr.eq(dut.waddr), wp.data.eq(dut.wdata), wp.en.eq(dut.wen)]
    return top, dut, mem


async def _words_when_done(ctx, dut, mem) -> list[int]:
    await ctx.tick().until(dut.done)
    await ctx.tick()
    return [ctx.get(mem.data[a]) for a in range(mem.depth)]


def _row_int(packed_row: np.ndarray) -> int:
    """A spec-packed row (uint32 words) as one integer, bit k = element k."""
    return int(sum(int(w) << (32 * i) for i, w in enumerate(packed_row)))


@pytest.mark.parametrize("rows, cols, lanes, t, n, base, idle", [
    (2, 2, 8, 5, 13, 3, 0.0), (4, 4, 32, 9, 70, 0, 0.4), (1, 8, 8, 3, 8, 1, 0.3),
    (3, 1, 4, 7, 9, 2, 0.5),
])
def test_packer_writes_spec_rows(rows, cols, lanes, t, n, base, idle):
    cfg = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=64, max_t=16, max_n=96)
    depth = 64
    rng = np.random.default_rng(t * n)
    bits = rng.integers(0, 2, size=(t, n), dtype=np.uint8)
    init = [int(v) for v in rng.integers(0, 1 << lanes, size=depth, dtype=np.uint64)]
    top, dut, mem = _packer_with_memory(cfg, depth, init)
    prng = random.Random(n)
    seen = {}

    async def bench(ctx):
        await put_all(ctx, dut.cmd, [{"t": t, "n": n, "base": base}], rng=prng)
        await put_all(ctx, dut.i, _beats(bits, rows, cols), rng=prng, idle=idle)
        seen["words"] = await _words_when_done(ctx, dut, mem)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Every C-bit group a channel tile covers is written (zeros beyond N); nothing else is.
    wpr = -(-n // lanes)
    want = list(init)
    packed = pack_bits(bits)                          # (T, ceil(N / 32)) uint32, spec packing
    for tok in range(t):
        row = _row_int(packed[tok])
        for n0 in range(0, n, cols):
            addr, shift = base + tok * wpr + n0 // lanes, n0 % lanes
            group = (row >> n0) & ((1 << cols) - 1)
            want[addr] = want[addr] & ~(((1 << cols) - 1) << shift) | (group << shift)
    assert seen["words"] == want


def test_packer_checks_its_parameters():
    with pytest.raises(ValueError, match=r"lanes \(8\) to be a multiple of cols \(3\)"):
        ResultPacker(CoreConfig(rows=1, cols=3, lanes=8, max_k=8, max_t=4, max_n=8), depth=8)
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        ResultPacker(CoreConfig(rows=1, cols=2, lanes=8, max_k=8, max_t=4, max_n=8), depth=0)


@pytest.mark.parametrize("rows, cols, lanes, t, n, k", [(2, 2, 8, 5, 11, 20), (3, 4, 8, 7, 9, 40)])
def test_core_results_pack_into_golden_rows(rows, cols, lanes, t, n, k):
    """The real GemmCore's thresholded beats (not a model of them) through the packer."""
    from amaranth.lib import wiring

    from onebit.hdl.core.gemm import GemmCore
    from onebit.host.core_config import Op
    from onebit.host.core_streams import encode_gemm
    from onebit.host.golden import binary_linear

    cfg = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=64, max_t=16, max_n=16)
    rng = np.random.default_rng(k)
    x, w = rng.integers(0, 2, (t, k), dtype=np.uint8), rng.integers(0, 2, (n, k), dtype=np.uint8)
    thr = rng.integers(-4, 5, n)
    want = binary_linear(pack_bits(x), pack_bits(w), k, thr)          # (T, N) bits
    streams = encode_gemm(cfg, Op.XOR, x, w, thr)
    depth = 32
    top, dut, mem = _packer_with_memory(cfg, depth, [])
    top.submodules.core = core = GemmCore(cfg)
    wiring.connect(top, core.result, dut.i)
    prng = random.Random(k)
    seen = {}

    def feeder(stream, items):
        async def feed(ctx):
            await put_all(ctx, stream, items, rng=prng, idle=0.3)
        return feed

    async def control(ctx):
        await put_all(ctx, dut.cmd, [{"t": t, "n": n, "base": 0}], rng=prng)
        await put_all(ctx, core.cmd, [streams.cmd], rng=prng)
        seen["words"] = await _words_when_done(ctx, dut, mem)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    for stream, items in ((core.act, streams.act), (core.weight, streams.weight),
                          (core.thresh, streams.thresh)):
        sim.add_testbench(feeder(stream, items))
    sim.run()
    wpr = -(-n // lanes)
    packed = pack_bits(want)
    for tok in range(t):
        row = _row_int(packed[tok])
        got = sum(seen["words"][tok * wpr + j] << (lanes * j) for j in range(wpr))
        assert got == row, f"token {tok}"
