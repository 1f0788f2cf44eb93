"""GemmCore on Amaranth's simulator: exact results against the golden model, with random idle
cycles on every source and random backpressure on the sink."""

import zlib

import numpy as np
import pytest
from amaranth.hdl import Fragment

from onebit.hdl.core.array import ComputeArray
from onebit.host.core_config import CoreConfig, Op
from onebit.host.core_streams import encode_gemm, expected_gemm
from onebit.sim.gemm_amaranth import run_commands

CONFIGS = {
    "2x3x8": CoreConfig(rows=2, cols=3, lanes=8, max_k=70, max_t=9, max_n=20),
    "3x2x4": CoreConfig(rows=3, cols=2, lanes=4, max_k=33, max_t=7, max_n=9),
    "1x1x16": CoreConfig(rows=1, cols=1, lanes=16, max_k=40, max_t=4, max_n=5),
    "2x2x16": CoreConfig(rows=2, cols=2, lanes=16, max_k=20, max_t=6, max_n=7),
    # 32 lanes (two register stages in each element, as from 16: CoreConfig.pe_stages).
    "2x1x32": CoreConfig(rows=2, cols=1, lanes=32, max_k=100, max_t=5, max_n=4),
    "5x2x4": CoreConfig(rows=5, cols=2, lanes=4, max_k=30, max_t=12, max_n=5),
    # Lanes 0..19 of each element counted by four block RAM tables (the iCEBreaker's choice).
    "2x2x32t4": CoreConfig(rows=2, cols=2, lanes=32, max_k=100, max_t=5, max_n=5,
                           count_tables=4),
}


def random_case(rng, cfg, op=None, thresholds=None):
    t = int(rng.integers(1, cfg.max_t + 1))
    n = int(rng.integers(1, cfg.max_n + 1))
    k = int(rng.integers(1, cfg.max_k + 1))
    op = Op(int(rng.integers(0, 2))) if op is None else op
    x = rng.integers(0, 2, (t, k), dtype=np.uint8)
    w = rng.integers(0, 2, (n, k), dtype=np.uint8)
    if thresholds is None:
        thresholds = bool(rng.integers(0, 2))
    thr = rng.integers(-k - 3, k + 4, n) if thresholds else None
    return op, x, w, thr


def check(cfg, cases, run):
    for (op, x, w, thr), got in zip(cases, run, strict=True):
        ints, bits = expected_gemm(op, x, w, thr)
        if thr is None:
            assert got.ints.tolist() == ints.tolist()
        else:
            assert got.bits.tolist() == bits.tolist()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.4, 0.4), (0.1, 0.8)])
def test_random_commands(name, idle, stall):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}{idle}{stall}".encode()))
    cases = [random_case(rng, cfg) for _ in range(10)]
    run = run_commands(cfg, [encode_gemm(cfg, *c) for c in cases], seed=int(rng.integers(1e6)),
                       idle=idle, stall=stall)
    check(cfg, cases, run)


@pytest.mark.parametrize("name", ["2x3x8", "2x1x32", "5x2x4", "2x2x32t4"])
@pytest.mark.parametrize("option", [{"operand_copies": True}, {"result_stage": False}],
                         ids=["operand_copies", "no_result_stage"])
def test_family_options(name, option):
    # The choices the platform's family makes, forced: each element's own operand registers
    # (ECP5's; one cycle more from issue to the accumulators), the results computed as the
    # shadow takes them (iCE40's); with idle sources and a stalling sink.
    cfg = CONFIGS[name]
    key = next(iter(option))
    rng = np.random.default_rng(zlib.crc32(f"{key}{name}".encode()))
    cases = [random_case(rng, cfg) for _ in range(8)]
    run = run_commands(cfg, [encode_gemm(cfg, *c) for c in cases], seed=int(rng.integers(1e6)),
                       idle=0.3, stall=0.5, **option)
    check(cfg, cases, run)


@pytest.mark.parametrize("op", list(Op))
def test_edges_and_both_modes(op):
    cfg = CONFIGS["2x3x8"]
    rng = np.random.default_rng(int(op))
    cases = []
    for t, n, k in [(1, 1, 1), (9, 20, 70), (2, 3, 8), (3, 4, 9), (1, 20, 64), (9, 1, 7)]:
        x = rng.integers(0, 2, (t, k), dtype=np.uint8)
        w = rng.integers(0, 2, (n, k), dtype=np.uint8)
        cases.append((op, x, w, rng.integers(-k - 2, k + 3, n)))
    run = run_commands(cfg, [encode_gemm(cfg, *c) for c in cases], seed=3)
    check(cfg, cases, run)


def test_padding_bits_are_ignored():
    """Garbage in the padding bits of the last chunk never changes a result."""
    cfg = CONFIGS["2x3x8"]
    rng = np.random.default_rng(9)
    x = rng.integers(0, 2, (3, 13), dtype=np.uint8)
    w = rng.integers(0, 2, (5, 13), dtype=np.uint8)
    for op in Op:
        check_dirty(cfg, op, x, w)


def check_dirty(cfg, op, x, w):
    thr = None
    streams = encode_gemm(cfg, op, x, w)
    dirty = type(streams)(cmd=streams.cmd,
                          act=[c | (0xE0 if i % 2 else 0) for i, c in enumerate(streams.act)],
                          weight=[c | (0x60 if i % 2 else 0) for i, c in
                                  enumerate(streams.weight)],
                          thresh=streams.thresh, result_beats=streams.result_beats)
    check(cfg, [(op, x, w, thr)], run_commands(cfg, [dirty], seed=1))


def test_bad_commands_are_rejected_and_next_works():
    cfg = CONFIGS["3x2x4"]
    rng = np.random.default_rng(1)
    good = random_case(rng, cfg)
    good_streams = encode_gemm(cfg, *good)
    bad = []
    for field, value in [("t", 0), ("t", 8), ("n", 0), ("n", 10), ("k", 0), ("k", 34)]:
        cmd = dict(good_streams.cmd, **{field: value})
        bad.append(type(good_streams)(cmd=cmd, act=[], weight=[], thresh=[], result_beats=0))
    run = run_commands(cfg, [*bad, good_streams], seed=2)
    assert [r.rejected for r in run] == [True] * 6 + [False]
    check(cfg, [good], run[-1:])


def test_reset_mid_operation_then_correct():
    cfg = CONFIGS["2x3x8"]
    rng = np.random.default_rng(4)
    cases = [random_case(rng, cfg, thresholds=True) for _ in range(3)]
    streams = [encode_gemm(cfg, *c) for c in cases]
    for abort_after in (3, 40):
        run = run_commands(cfg, streams, seed=abort_after, abort_after=abort_after)
        check(cfg, cases[1:], run[1:])


def test_config_validation():
    with pytest.raises(ValueError, match="Lane count must be a power of two, not 12"):
        CoreConfig(lanes=12)
    with pytest.raises(ValueError, match="Row count must be a positive integer, not 0"):
        CoreConfig(rows=0)
    with pytest.raises(ValueError, match="Maximum K must be a positive integer, not -1"):
        CoreConfig(max_k=-1)
    with pytest.raises(ValueError, match="Count tables must be a non-negative integer, not -1"):
        CoreConfig(count_tables=-1)
    with pytest.raises(ValueError, match="Count tables must be a non-negative integer, not True"):
        CoreConfig(count_tables=True)
    with pytest.raises(ValueError, match="Count tables need elements of at least 16 lanes "
                                         r"\(two stages\), not 8"):
        CoreConfig(lanes=8, count_tables=1)
    with pytest.raises(ValueError, match="4 count tables of 5 lanes need 20 lanes; an element "
                                         "has 16"):
        CoreConfig(lanes=16, count_tables=4)
    # Another shape keeps the tables' block RAM budget (8 here), at most lanes // 5 an element.
    c = CoreConfig(rows=2, cols=1, lanes=32, count_tables=4)
    assert [c.reshaped(**kw).count_tables for kw in (
        {"lanes": 16}, {"rows": 1}, {"rows": 4, "cols": 4, "lanes": 16}, {"lanes": 8},
        {"cols": 2})] == [3, 6, 0, 0, 2]
    assert c.reshaped(rows=3).rows == 3 and CoreConfig().reshaped(lanes=16).count_tables == 0
    with pytest.raises(ValueError, match="Row count must be a positive integer, not 0"):
        c.reshaped(rows=0)
    # An implementation choice: the same device to the host (IDENTIFY does not carry it).
    assert CoreConfig(count_tables=3) == CoreConfig()
    with pytest.raises(ValueError, match="Count tables are for the tree count .* not ECP5's "
                                         "carry chains: count_tables=2"):
        Fragment.get(ComputeArray(CoreConfig(count_tables=2), family="ecp5"), None)
    with pytest.raises(ValueError, match="K must be in 1..70 for this core, not 71"):
        encode_gemm(CONFIGS["2x3x8"], Op.XOR, np.zeros((1, 71), np.uint8),
                    np.zeros((1, 71), np.uint8))
