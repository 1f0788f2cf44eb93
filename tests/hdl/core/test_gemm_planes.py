"""GemmCore with activation bit-planes (``CoreConfig.max_bits > 1``) on Amaranth's simulator:
products of A-bit activations with binary weights equal ``golden.linear``, with random idle
cycles on every source and random backpressure on the sink; commands it cannot run are
rejected."""

import zlib

import numpy as np
import pytest

from onebit.host.core_config import CoreConfig, Op
from onebit.host.core_streams import encode_gemm, expected_gemm
from onebit.sim.gemm_amaranth import run_commands

CONFIGS = {
    "2x3x8-A4": CoreConfig(rows=2, cols=3, lanes=8, max_k=70, max_t=9, max_n=20, max_bits=4),
    "3x2x4-A2": CoreConfig(rows=3, cols=2, lanes=4, max_k=33, max_t=7, max_n=9, max_bits=2),
    "2x1x32-A3": CoreConfig(rows=2, cols=1, lanes=32, max_k=100, max_t=5, max_n=4, max_bits=3),
    "1x1x16-A4": CoreConfig(rows=1, cols=1, lanes=16, max_k=64, max_t=4, max_n=5, max_bits=4),
}


def random_case(rng, cfg):
    bits = int(rng.integers(1, cfg.max_bits + 1))
    t = int(rng.integers(1, cfg.max_t + 1))
    n = int(rng.integers(1, cfg.max_n + 1))
    k = int(rng.integers(1, cfg.max_k_at(bits) + 1))
    x = rng.integers(0, 1 << bits, (t, k), dtype=np.uint8)
    w = rng.integers(0, 2, (n, k), dtype=np.uint8)
    bound = ((1 << bits) - 1) * k
    thr = rng.integers(-bound - 3, bound + 4, n) if rng.integers(0, 2) else None
    return x, w, thr, bits


def check(cases, run):
    for (x, w, thr, bits), got in zip(cases, run, strict=True):
        assert not got.rejected
        ints, out = expected_gemm(Op.XOR, x, w, thr, bits=bits)
        if thr is None:
            assert got.ints.tolist() == ints.tolist()
        else:
            assert got.bits.tolist() == out.tolist()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.4, 0.4)])
def test_planes_random(name, idle, stall):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(f"planes{name}{idle}{stall}".encode()))
    cases = [random_case(rng, cfg) for _ in range(8)]
    run = run_commands(cfg, [encode_gemm(cfg, Op.XOR, x, w, thr, bits=b)
                             for x, w, thr, b in cases],
                       seed=int(rng.integers(1e6)), idle=idle, stall=stall)
    check(cases, run)


@pytest.mark.parametrize("option", [{"operand_copies": True}, {"result_stage": False}],
                         ids=["operand_copies", "no_result_stage"])
def test_planes_family_options(option):
    cfg = CONFIGS["2x3x8-A4"]
    rng = np.random.default_rng(zlib.crc32(f"planes{next(iter(option))}".encode()))
    cases = [random_case(rng, cfg) for _ in range(6)]
    run = run_commands(cfg, [encode_gemm(cfg, Op.XOR, x, w, thr, bits=b)
                             for x, w, thr, b in cases],
                       seed=int(rng.integers(1e6)), idle=0.3, stall=0.5, **option)
    check(cases, run)


def test_planes_extremes():
    # Every level at its ends (all 0, all L), K at the longest row each A allows, one token
    # and one output, thresholds at the ends of the result range.
    cfg = CONFIGS["2x3x8-A4"]
    cases = []
    for bits in (1, 2, 3, 4):
        k = cfg.max_k_at(bits)
        top = (1 << bits) - 1
        for fill in (0, top):
            x = np.full((3, k), fill, np.uint8)
            w = np.tile(np.array([0, 1], np.uint8), (4, k))[:, :k]
            cases.append((x, w, None, bits))
            cases.append((x, w, np.array([-top * k, top * k, top * k + 1, -top * k - 1]), bits))
        cases.append((np.full((1, 1), top, np.uint8), np.ones((1, 1), np.uint8), None, bits))
    run = run_commands(cfg, [encode_gemm(cfg, Op.XOR, x, w, thr, bits=b)
                             for x, w, thr, b in cases], seed=5, idle=0.2, stall=0.3)
    check(cases, run)


def test_planes_cycles_scale_with_bits():
    # A row of A planes issues A times the chunks of one plane: the core's active cycles.
    cfg = CONFIGS["2x3x8-A4"]
    rng = np.random.default_rng(3)
    w = rng.integers(0, 2, (6, 16), dtype=np.uint8)
    active = {}
    for bits in (1, 2, 4):
        x = rng.integers(0, 1 << bits, (8, 16), dtype=np.uint8)
        (run,) = run_commands(cfg, [encode_gemm(cfg, Op.XOR, x, w, bits=bits)], idle=0, stall=0)
        active[bits] = run.counters["active"]
    assert active[2] == 2 * active[1] and active[4] == 4 * active[1]


def test_planes_rejected():
    # The core rejects what it cannot run (the host refuses it first; these reach it raw).
    cfg = CONFIGS["3x2x4-A2"]
    good = encode_gemm(cfg, Op.XOR, np.ones((2, 4), np.uint8), np.ones((1, 4), np.uint8))
    bad = [dict(good.cmd, bits_m1=2), dict(good.cmd, bits_m1=3),
           dict(good.cmd, bits_m1=1, op=Op.AND),
           dict(good.cmd, bits_m1=1, k=cfg.max_k_at(2) + 1)]
    streams = [type(good)(cmd=c, act=[], weight=[], thresh=[], result_beats=0) for c in bad]
    run = run_commands(cfg, streams + [good], idle=0, stall=0)
    assert [r.rejected for r in run] == [True] * len(bad) + [False]
    assert run[-1].ints.tolist() == [[4], [4]]


@pytest.mark.parametrize("bad", [0, 5, True, 2.0])
def test_max_bits_validated(bad):
    with pytest.raises(ValueError, match=f"Maximum activation bits must be 1, 2, 3 or 4, not "
                                         f"{bad!r}"):
        CoreConfig(max_bits=bad)


def test_host_refuses_what_the_core_cannot_run():
    cfg = CONFIGS["3x2x4-A2"]
    x, w = np.ones((2, 17), np.uint8), np.ones((1, 17), np.uint8)
    with pytest.raises(ValueError, match="K = 17 at 2 bits is 10 chunks a row .2 planes.; "
                                         "this core holds 9"):
        encode_gemm(cfg, Op.XOR, x, w, bits=2)
    with pytest.raises(ValueError, match="Activation bits must be in 1..2 for this core, not 3"):
        encode_gemm(cfg, Op.XOR, x[:, :4], w[:, :4], bits=3)
    with pytest.raises(ValueError, match="take the XOR product only"):
        encode_gemm(cfg, Op.AND, x[:, :4], w[:, :4], bits=2)
    with pytest.raises(ValueError, match="x_bits"):
        encode_gemm(cfg, Op.XOR, np.full((2, 4), 4, np.uint8), w[:, :4], bits=2)
    # Widths from the longest row at each A (9 chunks of 8: K <= 70, 32, 24, 16 at A = 1..4).
    cfg = CONFIGS["2x3x8-A4"]
    assert [cfg.max_k_at(a) for a in (1, 2, 3, 4)] == [70, 32, 24, 16]
    assert cfg.acc_width == (15 * 2 * 8).bit_length()
    assert cfg.result_bound == 15 * 16 and cfg.result_width == (15 * 16).bit_length() + 1


def test_one_bit_products_cost_the_same_on_a_planes_core():
    # A = 1 on a core of max_bits = 4 takes exactly the cycles of the one-bit core, busy and
    # active, for both ops, with and without thresholds.
    one = CoreConfig(rows=2, cols=3, lanes=8, max_k=70, max_t=9, max_n=20)
    four = CoreConfig(rows=2, cols=3, lanes=8, max_k=70, max_t=9, max_n=20, max_bits=4)
    rng = np.random.default_rng(11)
    cases = []
    for op in (Op.XOR, Op.AND):
        for t, n, k in [(1, 1, 1), (9, 20, 70), (5, 7, 16), (3, 4, 9)]:
            x = rng.integers(0, 2, (t, k), dtype=np.uint8)
            w = rng.integers(0, 2, (n, k), dtype=np.uint8)
            thr = rng.integers(-k, k + 1, n) if t % 2 else None
            cases.append((op, x, w, thr))
    counts = []
    for cfg in (one, four):
        run = run_commands(cfg, [encode_gemm(cfg, *c) for c in cases], idle=0, stall=0)
        counts.append([(r.counters["busy"], r.counters["active"]) for r in run])
    assert counts[0] == counts[1]
