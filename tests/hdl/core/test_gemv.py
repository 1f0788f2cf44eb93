# amaranth: UnusedElaboratable=no
"""The GEMV unit (decode's T = 1 product) against golden ``binary_linear``: rows shorter than a
line (several rows a line) and longer (several lines a row), integer and thresholded results,
random backpressure on the result stream (heavy enough to fill the output FIFO); the result
beats are the GEMM core's format."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module
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


def _harness(x_words, w_words, th):
    top = Module()
    top.submodules.gemv = dut = Gemv(DEV)
    top.submodules.act = act = memory.Memory(shape=8, depth=DEV.act_words,
                                             init=x_words + [0] * (DEV.act_words - len(x_words)))
    top.submodules.w = ws = BankedStore(width=8, depth=DEV.weight_words, banks=8)
    top.submodules.th = ts = BankedStore(width=DEV.core.threshold_width,
                                         depth=DEV.thresh_words, banks=4)
    rd = act.read_port()
    top.d.comb += [rd.addr.eq(dut.act_raddr), rd.en.eq(dut.act_ren), dut.act_rdata.eq(rd.data),
                   ws.laddr.eq(dut.w_laddr), ws.lren.eq(dut.w_lren), dut.w_ldata.eq(ws.ldata),
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
def test_gemv_matches_golden(k, n, thr, stall):
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
    top, dut, ws, ts = _harness([0] * x_base + x_words, [], [])
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
