# amaranth: UnusedElaboratable=no
"""The attention unit and its KV cache against the golden model's steps 3-5: prefill (append all
rows, then query every token) and decode (append one row, query it) give the golden context
bits; a full cache refuses rows with a sticky error; random idle cycles and backpressure on
every stream."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from onebit.hdl.layer.attention import AttentionUnit
from onebit.host import golden
from onebit.host.packing import pack_bits
from onebit.sim.streams import get_all, put_all


def _golden_context(qb, kb, vb, heads, ta, tc):
    """Cb (T, D) from golden's primitives, as layer_step computes it."""
    t, d = qb.shape
    dh = d // heads
    cache = golden.KVCache(heads, dh, t)
    cache.append(kb.reshape(t, heads, dh), vb)          # 1-bit levels: the bits
    qh = pack_bits(qb.reshape(t, heads, dh))
    s = golden.dot(qh[:, None], cache.k[None, :t, 0], dh)    # plane 0: the key bits
    a = (s >= ta[None, None, :]) & (np.arange(t)[None, :] <= np.arange(t)[:, None])[:, :, None]
    vt = cache.vt[0, :, :(t + 31) // 32].reshape(heads, dh, -1)
    c = golden.mdot(pack_bits(np.moveaxis(a, 1, 2))[:, :, None, :], vt[None]).reshape(t, d)
    return (c >= tc).astype(np.uint8)


def _as_int(bits):
    return int(sum(int(b) << i for i, b in enumerate(bits)))


def _run(dut, script, *, seed, idle, stall):
    """``script``: a list of ("kv", k, v) and ("q", q, pos); returns the answers."""
    rng = random.Random(seed)
    answers = []
    n_q = sum(1 for s in script if s[0] == "q")

    async def driver(ctx):
        for kind, a, b in script:
            if kind == "kv":
                await put_all(ctx, dut.kv, [{"k": _as_int(a), "v": _as_int(b)}], rng=rng,
                              idle=idle)
            else:
                await put_all(ctx, dut.q, [{"q": _as_int(a), "pos": b}], rng=rng, idle=idle)

    async def consumer(ctx):
        answers.extend(await get_all(ctx, dut.c, n_q, rng=rng, stall=stall,
                                     convert=lambda p: (int(p.bits), int(p.error))))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(consumer)
    return sim, answers


def _setup(heads, dh, t, seed):
    rng = np.random.default_rng(seed)
    d = heads * dh
    qb, kb, vb = (rng.integers(0, 2, size=(t, d), dtype=np.uint8) for _ in range(3))
    ta = rng.integers(-2, 3, size=heads)
    tc = rng.integers(-2, 3, size=d)
    return qb, kb, vb, ta, tc


def _thresholds(dut, ta, tc):
    async def set_thresholds(ctx):
        for h, v in enumerate(ta):
            ctx.set(dut.ta[h], int(v))
        for i, v in enumerate(tc):
            ctx.set(dut.tc[i], int(v))
    return set_thresholds


@pytest.mark.parametrize("scan_tokens", [1, 2])
@pytest.mark.parametrize("heads, dh, t, mode, idle, stall", [
    (2, 8, 12, "prefill", 0.0, 0.0), (2, 8, 12, "decode", 0.3, 0.4),
    (4, 5, 9, "prefill", 0.5, 0.5), (1, 32, 20, "decode", 0.2, 0.2),
])
def test_context_bits_match_golden(heads, dh, t, mode, idle, stall, scan_tokens):
    qb, kb, vb, ta, tc = _setup(heads, dh, t, seed=heads * 100 + t)
    want = _golden_context(qb, kb, vb, heads, ta, tc)
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=t + 3, scan_tokens=scan_tokens)
    if mode == "prefill":
        script = [("kv", kb[i], vb[i]) for i in range(t)] + [("q", qb[i], i) for i in range(t)]
    else:
        script = [s for i in range(t) for s in (("kv", kb[i], vb[i]), ("q", qb[i], i))]
    sim, answers = _run(dut, script, seed=t, idle=idle, stall=stall)
    sim.add_testbench(_thresholds(dut, ta, tc))
    sim.run()
    assert [e for _, e in answers] == [0] * t
    got = np.array([[(bits >> i) & 1 for i in range(heads * dh)] for bits, _ in answers])
    assert np.array_equal(got, want)


@settings(max_examples=12, deadline=None)
@given(heads=st.integers(1, 4), dh=st.integers(1, 12), t=st.integers(1, 11),
       decode=st.booleans(), scan_tokens=st.sampled_from([1, 2]), seed=st.integers(0, 2**16),
       idle=st.sampled_from([0.0, 0.3]), stall=st.sampled_from([0.0, 0.4]))
def test_any_shape_matches_golden(heads, dh, t, decode, scan_tokens, seed, idle, stall):
    """Any head count, head width and token count, at both scan widths, in prefill and decode
    order, with idle cycles and backpressure: golden's context bits."""
    qb, kb, vb, ta, tc = _setup(heads, dh, t, seed=seed)
    want = _golden_context(qb, kb, vb, heads, ta, tc)
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=t + 1, scan_tokens=scan_tokens)
    if decode:
        script = [s for i in range(t) for s in (("kv", kb[i], vb[i]), ("q", qb[i], i))]
    else:
        script = [("kv", kb[i], vb[i]) for i in range(t)] + [("q", qb[i], i) for i in range(t)]
    sim, answers = _run(dut, script, seed=seed, idle=idle, stall=stall)
    sim.add_testbench(_thresholds(dut, ta, tc))
    sim.run()
    got = np.array([[(bits >> i) & 1 for i in range(heads * dh)] for bits, _ in answers])
    assert [e for _, e in answers] == [0] * t
    assert np.array_equal(got, want)


@pytest.mark.parametrize("scan_tokens", [1, 2])
def test_full_cache_refuses_rows_and_bad_positions_answer_errors(scan_tokens):
    heads, dh, cap = 2, 4, 5
    qb, kb, vb, ta, tc = _setup(heads, dh, cap + 2, seed=9)
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=cap, scan_tokens=scan_tokens)
    script = [("kv", kb[i], vb[i]) for i in range(cap)]
    script += [("q", qb[0], cap - 1), ("kv", kb[cap], vb[cap]), ("q", qb[0], cap - 1)]
    sim, answers = _run(dut, script, seed=1, idle=0.2, stall=0.2)
    sim.add_testbench(_thresholds(dut, ta, tc))
    flags = {}

    async def watch(ctx):
        await ctx.tick().repeat(400)
        flags["length"], flags["overflow"] = ctx.get(dut.length), ctx.get(dut.overflow)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        flags["after_clear"] = (ctx.get(dut.length), ctx.get(dut.overflow))

    sim.add_testbench(watch)
    sim.run()
    assert flags["length"] == cap and flags["overflow"] == 1
    assert flags["after_clear"] == (0, 0)
    # The refused row changed nothing: both queries of the last cached token agree.
    assert answers[0] == answers[1] and answers[0][1] == 0

    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=cap)
    sim, answers = _run(dut, [("kv", kb[0], vb[0]), ("q", qb[0], 3)], seed=2, idle=0, stall=0)
    sim.run()
    assert answers == [(0, 1)]


async def _first_answer(ctx, dut, limit=40):
    """Take ``c``'s next answer: the cycles it took from now and its (bits, error), or None
    after ``limit`` cycles."""
    ctx.set(dut.c.ready, 1)
    for n in range(1, limit):
        _, _, valid, payload = await ctx.tick().sample(dut.c.valid, dut.c.payload)
        if valid:
            return n, (int(payload.bits), int(payload.error))
    return None


def _simulate_with(dut, ta, tc, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(_thresholds(dut, ta, tc))
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("scan_tokens", [1, 2])
def test_clear_is_ordered_after_a_transfer_in_its_cycle(scan_tokens):
    """An append in the cycle of ``clear`` is taken and dropped with the rest; a query in the
    cycle of ``clear_slot`` is taken and answered from the cache as it was."""
    heads, dh, t = 2, 4, 3
    qb, kb, vb, ta, tc = _setup(heads, dh, t, seed=5)
    want = _golden_context(qb[:2], kb[:2], vb[:2], heads, ta, tc)[1]
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=6, scan_tokens=scan_tokens)
    seen = {}

    async def bench(ctx):
        rng = random.Random(3)
        for i in range(t):
            await put_all(ctx, dut.kv, [{"k": _as_int(kb[i]), "v": _as_int(vb[i])}], rng=rng)
        async def offer_with(stream, payload, pulse):
            """One cycle of ``stream`` valid with ``payload`` and ``pulse`` high: whether it
            was taken, and the length after."""
            ctx.set(stream.payload, payload)
            ctx.set(stream.valid, 1)
            ctx.set(pulse, 1)
            taken = ctx.get(stream.ready)
            await ctx.tick()
            ctx.set(stream.valid, 0)
            ctx.set(pulse, 0)
            return taken, ctx.get(dut.length)

        seen["append"] = await offer_with(dut.kv, {"k": _as_int(kb[0]), "v": _as_int(vb[0])},
                                          dut.clear)
        for i in range(2):
            await put_all(ctx, dut.kv, [{"k": _as_int(kb[i]), "v": _as_int(vb[i])}], rng=rng)
        seen["query"] = await offer_with(dut.q, {"q": _as_int(qb[1]), "pos": 1}, dut.clear_slot)
        seen["answer"] = await _first_answer(ctx, dut)

    _simulate_with(dut, ta, tc, bench)
    assert seen["append"] == (1, 0) and seen["query"] == (1, 0)
    assert seen["answer"] is not None and seen["answer"][1] == (_as_int(want), 0)


@pytest.mark.parametrize("scan_tokens", [1, 2])
@pytest.mark.parametrize("pos", [0, 1, 6, 7])
def test_a_query_takes_its_scan_plus_six_cycles(pos, scan_tokens):
    """From the query's transfer to its answer: ``ceil((pos + 1) / scan_tokens)`` cycles of
    scan plus 6, and the answer is golden's."""
    heads, dh, t = 2, 4, 8
    qb, kb, vb, ta, tc = _setup(heads, dh, t, seed=pos)
    want = _golden_context(qb, kb, vb, heads, ta, tc)[pos]
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=t, scan_tokens=scan_tokens)
    seen = {}

    async def bench(ctx):
        rng = random.Random(0)
        await put_all(ctx, dut.kv, [{"k": _as_int(kb[i]), "v": _as_int(vb[i])}
                                    for i in range(t)], rng=rng)
        await put_all(ctx, dut.q, [{"q": _as_int(qb[pos]), "pos": pos}], rng=rng)
        seen["answer"] = await _first_answer(ctx, dut)

    _simulate_with(dut, ta, tc, bench)
    assert seen["answer"] == (-(-(pos + 1) // scan_tokens) + 6, (_as_int(want), 0))


def test_attention_rejects_bad_parameters():
    with pytest.raises(ValueError, match="AttentionUnit capacity must be a positive integer, "
                                         "not 0"):
        AttentionUnit(heads=2, head_dim=4, capacity=0)
    with pytest.raises(ValueError, match="capacity must be at most 32767"):
        AttentionUnit(heads=2, head_dim=4, capacity=40000)
    with pytest.raises(ValueError, match="scan_tokens must be 1 or 2, not 3"):
        AttentionUnit(heads=2, head_dim=4, capacity=8, scan_tokens=3)
    with pytest.raises(ValueError, match="scan_tokens=2 needs bits=1 .*, not bits=2"):
        AttentionUnit(heads=2, head_dim=4, capacity=8, bits=2, scan_tokens=2)


def _planes_int(levels, bits_build, rng):
    """Levels (D,) as the unit's plane word: plane i holds bit i; planes from A on random."""
    d = len(levels)
    word = 0
    for i in range(bits_build):
        plane = [(int(v) >> i) & 1 for v in levels]
        word |= _as_int(plane) << (i * d)
    return word


def _levels_case(bits_build, bits, heads, dh, t, seed):
    """Random levels of ``bits_build`` bits (Q, K, V: (t, D)) of which the unit uses ``bits``,
    the heads' ``ta`` (their scores' medians) and every token's context sums as integers."""
    rng = np.random.default_rng(seed)
    lv, d = (1 << bits) - 1, heads * dh
    top = (1 << bits_build) - 1
    q, k, v = (rng.integers(0, top + 1, size=(t, d)) for _ in range(3))
    val = lambda x: 2 * (x & lv) - lv                                       # noqa: E731
    s = np.einsum("ihd,jhd->hij", val(q).reshape(t, heads, dh), val(k).reshape(t, heads, dh))
    ta = np.array([int(np.median(s[h])) for h in range(heads)])
    mask = (s >= ta[:, None, None]) & np.tril(np.ones((t, t), bool))[None]
    want = np.einsum("hij,jhd->ihd", mask.astype(np.int64),
                     val(v).reshape(t, heads, dh)).reshape(t, d)
    return q, k, v, ta, want


@pytest.mark.parametrize("bits_build, bits, heads, dh, t, mode, idle, stall", [
    (4, 4, 2, 8, 10, "prefill", 0.3, 0.3), (4, 2, 2, 8, 9, "decode", 0.3, 0.4),
    (3, 3, 4, 5, 8, "decode", 0.0, 0.0), (2, 1, 1, 16, 7, "prefill", 0.5, 0.5),
])
def test_context_sums_of_levels_match_the_integers(bits_build, bits, heads, dh, t, mode, idle,
                                                    stall):
    """A-bit levels: ``aprod`` scores, ``msum`` of the V values, against plain integers; the
    planes from A on hold random bits, which must not count."""
    q, k, v, ta, want = _levels_case(bits_build, bits, heads, dh, t, bits * 7 + t)
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=t + 2, bits=bits_build)
    prng = random.Random(t)
    kvs = [("kv", _planes_int(k[i], bits_build, prng), _planes_int(v[i], bits_build, prng))
           for i in range(t)]
    qs = [("q", _planes_int(q[i], bits_build, prng), i) for i in range(t)]
    script = kvs + qs if mode == "prefill" else [s for i in range(t) for s in (kvs[i], qs[i])]
    answers = []
    srng = random.Random(bits)

    async def driver(ctx):
        for kind, a, b in script:
            if kind == "kv":
                await put_all(ctx, dut.kv, [{"k": a, "v": b}], rng=srng, idle=idle)
            else:
                await put_all(ctx, dut.q, [{"q": a, "pos": b}], rng=srng, idle=idle)

    async def consumer(ctx):
        answers.extend(await get_all(ctx, dut.c, t, rng=srng, stall=stall,
                                     convert=lambda p: ([int(x) for x in p.ints],
                                                        int(p.error))))

    async def statics(ctx):
        ctx.set(dut.bits_m1, bits - 1)
        for h, x in enumerate(ta):
            ctx.set(dut.ta[h], int(x))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in (driver, consumer, statics):
        sim.add_testbench(bench)
    sim.run()
    assert [e for _, e in answers] == [0] * t
    assert np.array_equal(np.array([a for a, _ in answers]), want)


@pytest.mark.parametrize("pos", [0, 1, 6])
def test_a_plane_query_takes_its_scan_plus_nine_cycles(pos):
    """A-bit planes: from the query's transfer to its answer, ``pos + 1`` cycles of scan plus
    9, and the answer's sums are the integers'."""
    bits, heads, dh, t = 3, 2, 4, 8
    q, k, v, ta, want = _levels_case(bits, bits, heads, dh, t, pos)
    dut = AttentionUnit(heads=heads, head_dim=dh, capacity=t, bits=bits)
    prng = random.Random(pos)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.bits_m1, bits - 1)
        for h, x in enumerate(ta):
            ctx.set(dut.ta[h], int(x))
        rng = random.Random(0)
        await put_all(ctx, dut.kv, [{"k": _planes_int(k[i], bits, prng),
                                     "v": _planes_int(v[i], bits, prng)} for i in range(t)],
                      rng=rng)
        await put_all(ctx, dut.q, [{"q": _planes_int(q[pos], bits, prng), "pos": pos}], rng=rng)
        ctx.set(dut.c.ready, 1)
        for n in range(1, 40):
            _, _, valid, payload = await ctx.tick().sample(dut.c.valid, dut.c.payload)
            if valid:
                seen["answer"] = n, [int(x) for x in payload.ints], int(payload.error)
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["answer"] == (pos + 1 + 9, list(want[pos]), 0)
