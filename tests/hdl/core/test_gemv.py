# amaranth: UnusedElaboratable=no
"""The GEMV unit (decode's T = 1 product) against golden ``binary_linear``: rows shorter than a
line (several rows a line) and longer (several lines a row), integer and thresholded results,
random backpressure on the result stream (heavy enough to fill the output FIFO); the result
beats are the GEMM core's format."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator

from onebit.hdl.core.gemv import Gemv
from onebit.hdl.lib.banked_store import BankedStore
from onebit.host import golden
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.host.packing import pack_bits
from onebit.sim.streams import get_all

DEV = DeviceConfig(core=CoreConfig(rows=2, cols=4, lanes=8, max_k=128, max_t=4, max_n=128),
                   frame_bytes=256, act_words=512, weight_words=2048, thresh_words=256,
                   result_beats=64, weight_banks=8,
                   layer=LayerConfig(d_model=16, heads=2, max_ff=64, kv_capacity=8, kv_slots=1,
                                     res_words=64, param_words=64))


def _harness(x_words, dev=DEV, max_bits=1, act_latency=1, w_latency=1):
    """The unit with its activation memory (``x_words`` from address 0; with ``act_latency``
    2 its read data passes a register) and its banked weight and threshold stores (the weight
    store's reads with latency ``w_latency``; with 2 it reads in line mode under ``w_lmode``,
    as the device's does, and with 1 line by line under ``w_lren``)."""
    top = Module()
    top.submodules.gemv = dut = Gemv(dev, max_bits=max_bits, act_latency=act_latency,
                                     w_latency=w_latency)
    top.submodules.act = act = memory.Memory(shape=dev.core.lanes, depth=dev.act_words,
                                             init=x_words + [0] * (dev.act_words - len(x_words)))
    top.submodules.w = ws = BankedStore(width=dev.core.lanes, depth=dev.weight_words,
                                        banks=dev.weight_banks, latency=w_latency,
                                        line_mode=w_latency == 2)
    top.submodules.th = ts = BankedStore(width=dev.core.threshold_width,
                                         depth=dev.thresh_words, banks=dev.thresh_banks)
    rd = act.read_port()
    rdata = rd.data
    if act_latency == 2:
        rdata = Signal.like(rd.data)
        top.d.sync += rdata.eq(rd.data)
    top.d.comb += [rd.addr.eq(dut.act_raddr), rd.en.eq(dut.act_ren), dut.act_rdata.eq(rdata),
                   ws.laddr.eq(dut.w_laddr), dut.w_ldata.eq(ws.ldata),
                   (ws.lmode.eq(dut.w_lmode) if w_latency == 2 else ws.lren.eq(dut.w_lren)),
                   ts.laddr.eq(dut.th_laddr), ts.lren.eq(dut.th_lren), dut.th_ldata.eq(ts.ldata)]
    return top, dut, ws, ts


async def _fill(ctx, store, words):
    for a, w in enumerate(words):
        ctx.set(store.waddr, a)
        ctx.set(store.wdata, int(w))
        ctx.set(store.wen, 1)
        await ctx.tick()
    ctx.set(store.wen, 0)


@pytest.mark.parametrize("k, n, thr, stall", [
    (16, 13, False, 0.0),     # kw = 2 < P = 8: four rows a line, a partial last tile
    (64, 9, True, 0.4),       # kw = 8 = P: one row a line
    (128, 7, False, 0.5),     # kw = 16: two lines a row
    (32, 20, True, 0.3),      # kw = 4, thresholds
    (13, 5, True, 0.2),       # K not a multiple of the lanes (zero padding)
    # Many tiles under heavy backpressure: the output FIFO fills and the issue waits (credit).
    (16, 128, False, 0.85),   # kw = 2: a tile every line, the fastest beat rate
    (32, 125, True, 0.9),     # kw = 4: a tile every two lines
])
@pytest.mark.parametrize("act_latency, w_latency", [(1, 1), (2, 2)])
def test_gemv_matches_golden(k, n, thr, stall, act_latency, w_latency):
    rng = np.random.default_rng(k * n)
    x = rng.integers(0, 2, size=(1, k), dtype=np.uint8)
    w = rng.integers(0, 2, size=(n, k), dtype=np.uint8)
    t = rng.integers(-k // 4, k // 4 + 1, size=n)
    want = golden.binary_linear(pack_bits(x), pack_bits(w), k, t if thr else None)[0]
    kw = -(-k // 8)
    pad = np.zeros((n, kw * 8), np.uint8)
    pad[:, :k] = w
    xp = np.zeros((1, kw * 8), np.uint8)
    xp[:, :k] = x
    w_words = list(np.packbits(pad, axis=1, bitorder="little").reshape(-1))
    x_words = [int(v) for v in np.packbits(xp, axis=1, bitorder="little").reshape(-1)]
    x_base, w_line, th_line = 5, 3, 2
    top, dut, ws, ts = _harness([0] * x_base + x_words, act_latency=act_latency,
                                w_latency=w_latency)
    tiles = -(-n // 4)
    got = {}
    prng = random.Random(k)

    async def bench(ctx):
        await _fill(ctx, ws, [0] * (8 * w_line) + w_words + [0xFF] * 16)  # garbage after
        await _fill(ctx, ts, [0] * (4 * th_line) + [int(v) & 0x3FF for v in t])
        ctx.set(dut.params, {"threshold": int(thr), "n": n, "k": k, "act_base": x_base,
                             "w_line": w_line, "th_line": th_line})
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        got["beats"] = await get_all(ctx, dut.result, tiles, rng=prng, stall=stall,
                                     convert=lambda p: ([int(v) for v in p.ints], int(p.bits),
                                                        int(p.last)))
        await ctx.tick().until(~dut.busy)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run_until(1e-8 * 5_000)            # a lost beat ends here, not in a hang
    assert "beats" in got, "the GEMV unit did not deliver every beat"
    beats = got["beats"]
    assert [b[2] for b in beats] == [0] * (tiles - 1) + [1]
    if thr:
        bits = [(b[1] >> c) & 1 for b in beats for c in range(4)]
        assert bits[:n] == want.tolist() and not any(bits[n:])
        assert all(b[1] >> 4 == 0 for b in beats)          # rows beyond token 0 are 0
    else:
        ints = [v for b in beats for v in b[0]]
        assert ints[:n] == want.tolist() and not any(ints[n:])


# A core of up to 4-bit activations: the GEMV unit takes the token's row as its bit-planes.
DEV_PLANES = DeviceConfig(
    core=CoreConfig(rows=2, cols=4, lanes=8, max_k=256, max_t=4, max_n=128, max_bits=4),
    frame_bytes=256, act_words=512, weight_words=2048, thresh_words=256, result_beats=64,
    weight_banks=8, layer=LayerConfig(d_model=16, heads=2, max_ff=64, kv_capacity=8,
                                      kv_slots=1, res_words=64, param_words=64))


def _run_planes(max_bits, bits, k, n, thr, stall, seed, act_latency=1, w_latency=1):
    """The row's ``bits``-bit levels through a ``Gemv(max_bits=...)``; the beats and the
    cycles from start to the last beat."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, size=(1, k))
    w = rng.integers(0, 2, size=(n, k), dtype=np.uint8)
    bound = ((1 << bits) - 1) * k
    t = rng.integers(-bound - 2, bound + 3, size=n)
    t[: min(n, 2)] = (-bound, bound + 1)[: min(n, 2)]          # the ends of the range
    want = golden.linear(x, w, t if thr else None, bits=bits)[0]
    kw = -(-k // 8)
    pad = np.zeros((n, kw * 8), np.uint8)
    pad[:, :k] = w
    planes = np.zeros((bits, kw * 8), np.uint8)
    for j, i in enumerate(range(bits - 1, -1, -1)):            # top plane first
        planes[j, :k] = (x[0] >> i) & 1
    w_words = list(np.packbits(pad, axis=1, bitorder="little").reshape(-1))
    x_words = [int(v) for v in np.packbits(planes, axis=1, bitorder="little").reshape(-1)]
    x_base, w_line, th_line = 3, 2, 1
    top, dut, ws, ts = _harness([0] * x_base + x_words, DEV_PLANES, max_bits, act_latency,
                                w_latency)
    tiles = -(-n // 4)
    got = {}
    prng = random.Random(seed)
    mask = (1 << DEV_PLANES.core.threshold_width) - 1

    async def bench(ctx):
        await _fill(ctx, ws, [0] * (8 * w_line) + w_words + [0xFF] * 16)
        await _fill(ctx, ts, [0] * (4 * th_line) + [int(v) & mask for v in t])
        params = {"threshold": int(thr), "n": n, "k": k, "act_base": x_base, "w_line": w_line,
                  "th_line": th_line}
        if max_bits > 1:
            params["bits_m1"] = bits - 1
        ctx.set(dut.params, params)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        start = got["start"] = ctx.get(cycle)
        got["beats"] = await get_all(ctx, dut.result, tiles, rng=prng, stall=stall,
                                     convert=lambda p: ([int(v) for v in p.ints], int(p.bits),
                                                        int(p.last)))
        got["cycles"] = ctx.get(cycle) - start

    cycle = 0

    async def count(ctx):
        nonlocal cycle
        async for _ in ctx.tick():
            cycle += 1

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(count)
    sim.run_until(1e-8 * 20_000)
    assert "beats" in got, "the GEMV unit did not deliver every beat"
    beats = got["beats"]
    assert [b[2] for b in beats] == [0] * (tiles - 1) + [1]
    if thr:
        bits_out = [(b[1] >> c) & 1 for b in beats for c in range(4)]
        assert bits_out[:n] == want.tolist() and not any(bits_out[n:])
    else:
        ints = [v for b in beats for v in b[0]]
        assert ints[:n] == want.tolist() and not any(ints[n:])
    return got["cycles"]


@pytest.mark.parametrize("bits, k, n, thr, stall", [
    (2, 16, 13, False, 0.3),     # kw = 2 < P: four rows a line, each line twice
    (2, 128, 9, True, 0.4),      # kw = 16: two lines a row, each pair twice
    (3, 64, 10, False, 0.2),     # kw = 8 = P: one row a line
    (4, 13, 7, True, 0.5),       # K not a multiple of the lanes
    (4, 64, 40, False, 0.85),    # kw = 8, four planes, the FIFO full under backpressure
    (1, 32, 11, True, 0.3),      # one plane on a planes unit
])
@pytest.mark.parametrize("act_latency, w_latency", [(1, 1), (2, 2)])
def test_gemv_planes_match_golden(bits, k, n, thr, stall, act_latency, w_latency):
    _run_planes(4, bits, k, n, thr, stall, seed=bits * k + n, act_latency=act_latency,
                w_latency=w_latency)


@pytest.mark.slow
def test_gemv_planes_issue_the_lines_once():
    # Without backpressure: A planes issue the lines of one (every plane's popcounts at once)
    # and load A times the row's words; one plane costs what the one-bit unit costs plus the
    # cycle of the register that the row's words pass in a multi-bit unit.
    for k in (128, 64):                                     # kw = 16 (two lines), kw = 8
        kw, n = k // 8, 64
        one = _run_planes(1, 1, k, n, False, 0.0, seed=k) + 1
        assert _run_planes(4, 1, k, n, False, 0.0, seed=k) == one
        # A register in front of the unit costs the one-bit unit that cycle, and a planes
        # unit nothing (it registers no word of its own then).
        assert _run_planes(1, 1, k, n, False, 0.0, seed=k, act_latency=2) == one
        assert _run_planes(4, 1, k, n, False, 0.0, seed=k, act_latency=2) == one
        # The weight store's output registers cost a cycle.
        assert _run_planes(4, 1, k, n, False, 0.0, seed=k, act_latency=2, w_latency=2) == \
            one + 1
        for a in range(2, 5):
            if a * kw > DEV_PLANES.core.max_chunks:
                continue
            got = _run_planes(4, a, k, n, False, 0.0, seed=k + a)
            assert got - one == (a - 1) * kw, (k, a, got, one)


def test_gemv_checks_max_bits():
    with pytest.raises(ValueError, match=r"max_bits must be an integer from 1 to the core's "
                                         r"max_bits \(1\), not 2"):
        Gemv(DEV, max_bits=2)
    with pytest.raises(ValueError, match="not True"):
        Gemv(DEV_PLANES, max_bits=True)
    with pytest.raises(ValueError, match=r"act_latency must be 1 or 2 \(cycles from act_ren to "
                                         r"act_rdata\), not 3"):
        Gemv(DEV, act_latency=3)
    with pytest.raises(ValueError, match=r"w_latency must be 1 or 2 \(cycles from w_lren to "
                                         r"w_ldata\), not 0"):
        Gemv(DEV, w_latency=0)
