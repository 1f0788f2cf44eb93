# amaranth: UnusedElaboratable=no
"""MultiThreshold and LevelPacker together: beats of integers in either order, with random idle
cycles in front and random stalls between the two, become the numerics' ``MT`` levels written
as bit-planes (top plane first) where ``onebit.host.layer_layout`` says, with the thresholds
read from a parameter store laid out by the host's own code."""

import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import memory

from onebit.hdl.layer.level_packer import LevelPacker
from onebit.hdl.layer.multi_threshold import MultiThreshold
from onebit.host import golden
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import PARAM_BITS, DeviceConfig, LayerConfig
from onebit.host.layer_layout import _mt_values, param_read_words
from onebit.sim.streams import put_all, simulate

DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=128, max_t=8, max_n=64, max_bits=4),
    act_words=512, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=1088, max_bits=4))
C, L = DEV.core.cols, DEV.core.lanes
W = 16


def _field_words(values, bits):
    v = [int(x) & ((1 << bits) - 1) for x in values]
    return [sum(f << (bits * i) for i, f in enumerate(v[j:j + C])) for j in range(0, len(v), C)]


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("tile_major, copies", [(1, 1), (0, 1), (1, 2)])
def test_levels_in_the_store_equal_mt(bits, tile_major, copies):
    rng = random.Random(bits * 10 + tile_major + copies)
    t, n = rng.randint(1, 5), rng.choice([6, 13, 16])       # n need not fill its groups
    _levels_equal_mt(rng, bits, tile_major, copies, t, n, idle=0.3, stalls=0.4)


@pytest.mark.parametrize("bits", [1, 2])
def test_groups_taking_turns_with_no_gaps(bits):
    """Token-major beats of two groups, offered and taken every cycle: each beat is taken in
    the cycle the one before issues its last reads, which replace the cached thresholds of
    the group it brings (a hit decided on the cache as it was would use the wrong ones)."""
    _levels_equal_mt(random.Random(bits), bits, 0, 1, 5, 4, idle=0, stalls=0)


def test_eight_thresholds_a_cycle():
    """A decode's pass (one token, tile-major) at A = 4 over 24 groups offered every cycle,
    none finding its thresholds cached: the unit takes a beat every ceil(15 / 8) = 2 cycles
    (its reads, four words on each of the two ports). (At one cycle a beat, A <= 3, the level
    packer's word writes set the pace instead.)"""
    assert param_read_words(DEV) == 4
    t, n = 1, 48
    takes = _levels_equal_mt(random.Random(4), 4, 1, 1, t, n, idle=0, stalls=0)
    assert len(takes) == t * (n // C)
    assert takes[-1] - takes[0] == (len(takes) - 1) * 2, takes


def _levels_equal_mt(rng, bits, tile_major, copies, t, n, *, idle, stalls):
    """Run the pass and check what it wrote; return the cycles in which the unit took a
    beat."""
    nrng = np.random.default_rng(bits * 10 + tile_major)
    took = []
    lv = (1 << bits) - 1
    groups = -(-n // C)
    y = nrng.integers(-300, 300, (t, groups * C))
    th = np.sort(nrng.integers(-320, 320, (n, lv)), axis=1)
    th[0] = [-(1 << 20)] * lv                                # beyond the field: clamped
    th[1] = [1 << 20] * lv
    p_base, region = 12, 17                                 # (p_base: a run's start)
    nw = -(-n // L)
    plane_words = nw * copies                               # each plane written copies times
    row_stride = bits * plane_words
    params = _field_words(_mt_values(DEV, th, n), PARAM_BITS)

    m = Module()
    m.submodules.mt = mt = MultiThreshold(DEV, width=W)
    m.submodules.pk = pk = LevelPacker(DEV)
    m.submodules.par = par = memory.Memory(shape=PARAM_BITS * C, depth=DEV.layer.param_words,
                                           init=[0] * p_base + params)
    m.submodules.act = act = memory.Memory(shape=L, depth=DEV.act_words, init=[])
    R = param_read_words(DEV)
    for i in range(2):      # (each port reads the run of R words holding word a, a first:
        run = [par.read_port() for _ in range(R)]         # RunReadStore's contract; every
        addr = getattr(mt, f"par_raddr{i}")               # cycle, as the datapath reads it)
        m.d.comb += [rp.addr.eq((addr & ~(R - 1)) + ((addr + j) & (R - 1)))
                     for j, rp in enumerate(run)]
        m.d.comb += getattr(mt, f"par_rdata{i}").eq(Cat(rp.data for rp in run))
    wp = act.write_port(granularity=C)
    m.d.comb += [wp.addr.eq(pk.act_waddr), wp.data.eq(pk.act_wdata), wp.en.eq(pk.act_wen)]
    gate = Signal()
    m.d.comb += [pk.i.payload.eq(mt.o.payload), pk.i.valid.eq(mt.o.valid & gate),
                 mt.o.ready.eq(pk.i.ready & gate)]

    order = ([(g, tok) for g in range(groups) for tok in range(t)] if tile_major else
             [(g, tok) for tok in range(t) for g in range(groups)])
    done = []

    async def drive(ctx):
        ctx.set(mt.config, {"tile_major": tile_major, "period": t if tile_major else groups,
                            "th_base": p_base, "region": region, "row_stride": row_stride,
                            "n": n, "bits_m1": bits - 1})
        ctx.set(pk.plane_words, plane_words)
        ctx.set(pk.copy_words, nw if copies == 2 else 0)
        ctx.set(pk.bits_m1, bits - 1)
        ctx.set(pk.tile_major, tile_major)
        ctx.set(mt.setup, 1)
        ctx.set(pk.setup, 1)
        await ctx.tick()
        ctx.set(mt.setup, 0)
        ctx.set(pk.setup, 0)
        ctx.set(pk.plane_words, 0)                    # taken at setup
        beats = [[int(v) for v in y[tok, g * C:(g + 1) * C]] for g, tok in order]
        await put_all(ctx, mt.i, beats, rng=rng, idle=idle)
        done.append(1)

    async def stall(ctx):
        cycles = 0
        while ctx.get(pk.written) < len(order):
            ctx.set(gate, int(rng.random() >= stalls))
            if ctx.get(mt.i.valid) and ctx.get(mt.i.ready):
                took.append(cycles)
            await ctx.tick()
            cycles += 1
            assert cycles < 5000, "the packer stopped writing"
        got = [ctx.get(act.data[a]) for a in range(DEV.act_words)]
        want = golden.multi_threshold(y[:, :n], th)
        for tok in range(t):
            for p in range(bits):                     # top plane first
                for copy in range(copies):
                    row = region + tok * row_stride + p * plane_words + copy * nw
                    plane = [(got[row + c // L] >> (c % L)) & 1 for c in range(groups * C)]
                    bit = bits - 1 - p
                    expect = [(int(want[tok, c]) >> bit) & 1 if c < n else 0
                              for c in range(groups * C)]
                    assert plane == expect, (tok, bit, copy, plane, expect)

    simulate(m, drive, stall)
    return took


def test_input_wider_than_the_parameter_field_is_refused():
    with pytest.raises(ValueError, match="at most PARAM_BITS"):
        MultiThreshold(DEV, width=PARAM_BITS + 1)


@pytest.mark.parametrize("bits, copies, t", [(1, 1, 8), (4, 1, 8), (2, 2, 8), (4, 2, 8),
                                             (2, 1, 6), (3, 2, 5)])
def test_a_tile_major_pass_takes_a_beat_a_cycle(bits, copies, t):
    # The packer alone, fed a tile-major pass without idle cycles: every beat is taken in one
    # cycle while the writes of a word (bits x copies) fit the next word's groups (lanes / cols
    # = 4 here); the last words' writes follow the last beat, bits x copies a token, then one
    # cycle.
    # (max_t = t: also a buffer for a number of tokens that is not a power of two)
    dev = replace(DEV, core=replace(DEV.core, max_t=t))
    groups = 7                                       # two columns of words, the second short
    gpw = L // C
    n_ops = bits * copies
    m = Module()
    m.submodules.pk = pk = LevelPacker(dev)
    m.submodules.act = act = memory.Memory(shape=L, depth=DEV.act_words, init=[])
    wp = act.write_port(granularity=C)
    m.d.comb += [wp.addr.eq(pk.act_waddr), wp.data.eq(pk.act_wdata), wp.en.eq(pk.act_wen)]
    nw = 2                                            # words a plane: 7 groups of 4 a word
    rng = np.random.default_rng(bits)
    lv = rng.integers(0, 1 << bits, (t, groups * C))
    beats = []
    for g in range(groups):
        for tok in range(t):
            word_end = g % gpw == gpw - 1 or g == groups - 1
            beats.append({"levels": [int(v) for v in lv[tok, g * C:(g + 1) * C]],
                          "addr": 3 + tok * 16 + g // gpw, "gsel": g % gpw, "tok": tok,
                          "word_end": word_end, "col_end": word_end and tok == t - 1,
                          "pass_end": g == groups - 1 and tok == t - 1})
    cycles = []

    async def bench(ctx):
        ctx.set(pk.plane_words, nw * copies)
        ctx.set(pk.copy_words, nw if copies == 2 else 0)
        ctx.set(pk.bits_m1, bits - 1)
        ctx.set(pk.tile_major, 1)
        ctx.set(pk.setup, 1)
        await ctx.tick()
        ctx.set(pk.setup, 0)
        n = 0
        for b in beats:
            ctx.set(pk.i.valid, 1)
            ctx.set(pk.i.payload, b)
            while True:
                ready = ctx.get(pk.i.ready)
                await ctx.tick()
                n += 1
                if ready:
                    break
        ctx.set(pk.i.valid, 0)
        while ctx.get(pk.written) < len(beats):
            await ctx.tick()
            n += 1
        cycles.append(n)
        for tok in range(t):                          # the planes, top first, and copies
            for p in range(bits):
                for copy in range(copies):
                    base = 3 + tok * 16 + p * nw * copies + copy * nw
                    got = [(ctx.get(act.data[base + ch // L]) >> (ch % L)) & 1
                           for ch in range(groups * C)]
                    want = [(int(v) >> (bits - 1 - p)) & 1 for v in lv[tok]]
                    assert got == want, (tok, p, copy)

    simulate(m, bench)
    # A column's beats write the column before's words; a column with fewer groups than
    # writes a word holds its last group's beats for the rest.
    cols = [min(gpw, groups - w) for w in range(0, groups, gpw)]
    held = sum(max(0, n_ops - g) * t for g in cols[1:])
    assert cycles[0] == len(beats) + held + t * n_ops + 1, (cycles[0], len(beats))
