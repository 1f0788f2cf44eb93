"""The GEMM core's parts on their own: ActivationBuffer and WeightBuffer store what their
streams carry (padding masked) where the issue stage reads it, with idle cycles on the streams;
the weight buffer refills a half only once it is released, and keeps each row's threshold
and popcount; ResultDrain turns captured sums into result beats under backpressure."""

import random

import pytest

from onebit.hdl.core.act_buffer import ActivationBuffer
from onebit.hdl.core.result_drain import ResultDrain
from onebit.hdl.core.weight_buffer import WeightBuffer
from onebit.host.core_config import CoreConfig
from onebit.sim.streams import get_all, put_all, simulate

CFG = CoreConfig(rows=3, cols=2, lanes=8, max_k=40, max_t=10, max_n=9)


def _shape(k: int) -> dict:
    L = CFG.lanes
    kw = -(-k // L)
    top = (k - 1) % L
    return {"kw": kw, "kw_one": int(kw == 1), "kw_m2": (kw - 2) % (CFG.max_chunks + 1),
            "last_mask": (1 << (top + 1)) - 1}


@pytest.mark.parametrize("seed", range(3))
def test_activation_rows_land_in_their_banks(seed):
    rng = random.Random(seed)
    dut = ActivationBuffer(CFG)
    R, L = CFG.rows, CFG.lanes

    async def bench(ctx):
        for _ in range(3):
            t, k = rng.randint(1, CFG.max_t), rng.randint(1, CFG.max_k)
            shape = _shape(k)
            for name, value in shape.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.t_m1, t - 1)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            rows = [[rng.randrange(1 << L) for _ in range(shape["kw"])] for _ in range(t)]
            assert ctx.get(dut.tokens) == 0 and not ctx.get(dut.loaded_all)
            await put_all(ctx, dut.act, [w for row in rows for w in row], rng=rng, idle=0.3)
            await ctx.tick()
            assert ctx.get(dut.tokens) == t and ctx.get(dut.loaded_all)
            for i, row in enumerate(rows):
                for j, word in enumerate(row):
                    want = word & (shape["last_mask"] if j == shape["kw"] - 1 else (1 << L) - 1)
                    ctx.set(dut.rd_addr, (i // R) * shape["kw"] + j)
                    ctx.set(dut.rd_en, 1)
                    await ctx.tick()
                    assert ctx.get(dut.rd_data[i % R]) == want, (i, j)

    simulate(dut, bench)


@pytest.mark.parametrize("seed", range(3))
def test_weight_tiles_fill_released_halves(seed):
    rng = random.Random(seed)
    dut = WeightBuffer(CFG)
    C, L = CFG.cols, CFG.lanes

    async def bench(ctx):
        for _ in range(3):
            n, k, thr_en = rng.randint(1, CFG.max_n), rng.randint(1, CFG.max_k), rng.randrange(2)
            shape = _shape(k)
            for name in ("kw_one", "kw_m2", "last_mask"):
                ctx.set(getattr(dut, name), shape[name])
            ctx.set(dut.thr_en, thr_en)
            ctx.set(dut.n, n)
            ctx.set(dut.n_ge_c, n >= C)
            ctx.set(dut.n_le_c, n <= C)
            rows = [[rng.randrange(1 << L) for _ in range(shape["kw"])] for _ in range(n)]
            thresholds = [rng.randrange(-50, 50) for _ in range(n)]
            ctx.set(dut.held, 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            tiles = [list(range(at, min(at + C, n))) for at in range(0, n, C)]
            for number, tile in enumerate(tiles):
                half = number % 2
                await put_all(ctx, dut.weight, [w for r in tile for w in rows[r]], rng=rng,
                              idle=0.3)
                if thr_en:
                    await put_all(ctx, dut.thresh, [thresholds[r] for r in tile], rng=rng,
                                  idle=0.3)
                while not ctx.get(dut.tile_loaded) & (1 << half):
                    await ctx.tick()
                # Both halves held (this one is read, the other not yet free): the loader
                # takes nothing.
                ctx.set(dut.held, 0b11)
                for _ in range(5):
                    await ctx.tick()
                    assert not ctx.get(dut.weight.ready)
                for _ in range(6):          # (wpop: four cycles behind the last chunk)
                    await ctx.tick()
                for col, r in enumerate(tile):
                    masked = [w & (shape["last_mask"] if j == shape["kw"] - 1 else (1 << L) - 1)
                              for j, w in enumerate(rows[r])]
                    assert ctx.get(dut.wpop[half][col]) == sum(bin(w).count("1")
                                                               for w in masked)
                    if thr_en:
                        assert ctx.get(dut.thr[half][col]) == thresholds[r]
                    for j, word in enumerate(masked):
                        ctx.set(dut.rd_addr, j)
                        ctx.set(dut.rd_en, 1)
                        await ctx.tick()
                        assert ctx.get(dut.rd_data[half][col]) == word, (r, j)
                # The other half released: the next tile goes there.
                ctx.set(dut.held, 1 << half)
            for _ in range(3):
                await ctx.tick()

    simulate(dut, bench)


@pytest.mark.parametrize("stage", [False, True])
@pytest.mark.parametrize("thr_en", [0, 1])
def test_captured_tiles_drain_as_results(stage, thr_en):
    """ResultDrain: each captured tile's results (``K - 2 acc`` or ``popcount(w) - acc``),
    compared with its threshold or as integers, masked to the tile, with backpressure."""
    rng = random.Random(stage * 2 + thr_en)
    R, C = CFG.rows, CFG.cols
    dut = ResultDrain(CFG, result_stage=stage)
    xor, k = rng.randrange(2), rng.randint(1, CFG.max_k)
    thr = [[rng.randrange(-k, k + 1) for _ in range(C)] for _ in range(2)]
    wpop = [[rng.randrange(k + 1) for _ in range(C)] for _ in range(2)]
    tiles = []
    for i in range(12):
        tiles.append({"rows": rng.randint(1, R), "cols": rng.randint(1, C),
                      "half": rng.randrange(2), "last_tt": rng.randrange(2),
                      "last_nt": int(i == 11)})
    sums = [[[rng.randrange(k + 1) for _ in range(C)] for _ in range(R)] for _ in tiles]
    want = []
    for tile, acc in zip(tiles, sums, strict=True):
        h = tile["half"]
        value = [[(k - 2 * acc[r][c]) if xor else (wpop[h][c] - acc[r][c]) for c in range(C)]
                 for r in range(R)]
        last = tile["last_nt"] and tile["last_tt"]
        if thr_en:
            bits = sum(1 << (r * C + c) for r in range(tile["rows"]) for c in range(tile["cols"])
                       if value[r][c] >= thr[h][c])
            want.append((bits, [0] * C, int(last)))
        else:
            for r in range(tile["rows"]):
                want.append((0, [value[r][c] if c < tile["cols"] else 0 for c in range(C)],
                             int(last and r == tile["rows"] - 1)))
    got = []

    async def source(ctx):
        for name, value in (("thr_en", thr_en), ("xor", xor), ("k", k)):
            ctx.set(getattr(dut, name), value)
        for h in range(2):
            for c in range(C):
                ctx.set(dut.thr[h][c], thr[h][c])
                ctx.set(dut.wpop[h][c], wpop[h][c])
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        raw_full = 0
        for tile, acc in zip(tiles, sums, strict=True):
            while raw_full or rng.random() < 0.3:
                _, _, raw_full = await ctx.tick().sample(dut.raw_full_next)
            ctx.set(dut.tile, tile)
            for r in range(R):
                for c in range(C):
                    ctx.set(dut.sums[r][c], acc[r][c])
            ctx.set(dut.capture, 1)
            _, _, raw_full = await ctx.tick().sample(dut.raw_full_next)
            ctx.set(dut.capture, 0)

    async def sink(ctx):
        beats = await get_all(ctx, dut.result, len(want), rng=rng, stall=0.5,
                              convert=lambda p: (p.bits, [p.ints[c] for c in range(C)],
                                                 p.last))
        got.extend(beats)

    simulate(dut, source, sink)
    assert got == want
