"""ResidualPass: every beat of a pass reads X, its scale and threshold where the layout says,
writes ``X1 = sat16(X + ((Y * s) >> r))`` back in place and ``X1 >= t`` into the activation
store, for generated beats (``y = 0``) and for the GEMM's beats with idle cycles between them."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.hdl.layer.residual_pass import ResidualPass
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import PARAM_BITS, DeviceConfig, LayerConfig
from onebit.sim.streams import put_all

DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    act_words=256, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))
C, L, D = DEV.core.cols, DEV.core.lanes, DEV.layer.d_model
Dc, Dw, GPW = D // C, D // L, L // C


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _pack(values, bits: int) -> int:
    return sum((v & ((1 << bits) - 1)) << (bits * i) for i, v in enumerate(values))


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("gen", [1, 0])
@pytest.mark.parametrize("seed", range(2))
def test_a_pass_matches_the_residual_arithmetic(gen, seed, registered):
    rng = random.Random(seed * 2 + gen)
    dut = ResidualPass(DEV, registered=registered)
    t, shift = rng.randint(1, 4), rng.randrange(16)
    res_base, pb, soff, toff, region = rng.randrange(8), rng.randrange(40), 0, 10, 40
    res = [[rng.randrange(-40000, 40000) for _ in range(C)] for _ in range(DEV.layer.res_words)]
    res = [[max(-32768, min(32767, v)) for v in w] for w in res]
    par = [[rng.randrange(-(1 << 16), 1 << 16) for _ in range(C)]
           for _ in range(DEV.layer.param_words)]
    beats = [(g, tok) for g in range(Dc) for tok in range(t)]           # the core's order
    yw = DEV.core.result_width           # (a product of K <= max_k bits fits)
    ys = {b: [0] * C if gen else [rng.randrange(-(1 << (yw - 1)), 1 << (yw - 1)) for _ in range(C)]
          for b in beats}
    res_writes, act_writes = [], []
    noise = random.Random(~seed)
    want_res, want_act = [], []
    for g, tok in beats:
        ra = res_base + tok * Dc + g
        x1 = []
        for ch in range(C):
            s = 0 if gen else _signed(par[pb + soff + g][ch], 8)
            x1.append(max(-32768, min(32767, res[ra][ch] + ((ys[g, tok][ch] * s) >> shift))))
        bits = sum(1 << ch for ch in range(C) if x1[ch] >= par[pb + toff + g][ch])
        if not gen:
            want_res.append((ra, _pack(x1, 16)))
        want_act.append((region + tok * Dw + g // GPW, bits * sum(1 << (C * i)
                                                                   for i in range(GPW)),
                         1 << (g % GPW)))

    async def bench(ctx):
        ctx.set(dut.t, t)
        ctx.set(dut.beats, t * Dc)
        ctx.set(dut.shift, shift)
        ctx.set(dut.res_base, res_base)
        ctx.set(dut.param_base, pb)
        ctx.set(dut.config, {"gen": gen, "write": 1 - gen, "bits": 1, "soff": soff,
                             "toff": toff, "region": region})
        ctx.set(dut.setup, 1)
        await ctx.tick()
        ctx.set(dut.setup, 0)
        assert not ctx.get(dut.done)
        if gen:
            ctx.set(dut.generate, 1)
        else:
            await put_all(ctx, dut.y, [{"ints": ys[b]} for b in beats], rng=rng, idle=0.4)
        cycles = 0
        while not ctx.get(dut.done):
            await ctx.tick()
            cycles += 1
            assert cycles < 100
        ctx.set(dut.generate, 0)

    async def stores(ctx):
        async for _, _, rren, raddr, p0en, p0, p1en, p1, wen, waddr, wdata, aen, aaddr, adata in \
                ctx.tick().sample(dut.resid_ren, dut.resid_raddr, dut.par_ren0, dut.par_raddr0,
                                  dut.par_ren1, dut.par_raddr1, dut.resid_wen, dut.resid_waddr,
                                  dut.resid_wdata, dut.act_wen, dut.act_waddr, dut.act_wdata):
            if rren:
                ctx.set(dut.resid_rdata, _pack(res[raddr], 16))
            # The parameter store reads every cycle (the datapath's): no read, other data.
            for en, addr, port in ((p0en, p0, dut.par_rdata0), (p1en, p1, dut.par_rdata1)):
                ctx.set(port, _pack(par[addr] if en else
                                    [noise.randrange(-(1 << 16), 1 << 16) for _ in range(C)],
                                    PARAM_BITS))
            if wen:
                res_writes.append((waddr, wdata))
            if aen:
                act_writes.append((aaddr, adata, aen))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(stores, background=True)
    sim.run()
    assert res_writes == want_res
    assert act_writes == want_act
