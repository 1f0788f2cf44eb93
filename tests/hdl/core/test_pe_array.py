# amaranth: UnusedElaboratable=no
"""Amaranth-simulator unit tests of the compute core's parts (processing element, array,
core options), exact against simple models."""

import random

import numpy as np
import pytest

from onebit.hdl.core.array import ComputeArray
from onebit.hdl.core.gemm import GemmCore
from onebit.hdl.core.pe import ProcessingElement
from onebit.host.core_config import CoreConfig
from onebit.sim.streams import simulate


@pytest.mark.parametrize("stages", [1, 2])
@pytest.mark.parametrize("lanes, count", [(lanes, count) for lanes in (1, 5, 8, 32, 64)
                                          for count in ("tree", "chains")
                                          if count == "tree" or lanes >= 4])
def test_pe_accumulate_clear_hold(lanes, stages, count):
    acc_width = (8 * lanes).bit_length()
    dut = ProcessingElement(lanes=lanes, acc_width=acc_width, stages=stages, count=count)
    check_accumulate_clear_hold(dut, lanes, stages, acc_width, lanes * 10 + stages)


@pytest.mark.parametrize("lanes, tables", [(5, 1), (16, 1), (16, 3), (32, 4), (32, 6)])
def test_pe_table_counted_lanes(lanes, tables):
    # Lanes counted by block RAM tables (5 a table) beside the tree's: the same results and
    # latency, with random enables (the tables' reads hold without ``en``).
    acc_width = (8 * lanes).bit_length()
    dut = ProcessingElement(lanes=lanes, acc_width=acc_width, stages=2, tables=tables)
    check_accumulate_clear_hold(dut, lanes, 2, acc_width, lanes * 10 + tables)


def check_accumulate_clear_hold(dut, lanes, stages, acc_width, seed):
    """Random chunks, tags and enables against a model of the element's stages."""
    assert dut.latency == stages
    rng = random.Random(seed)

    async def bench(ctx):
        model = 0
        # The element's register stages, oldest last: (count, valid, last) each.
        regs = [(0, False, False)] * stages
        for _ in range(400):
            x, w = rng.getrandbits(lanes), rng.getrandbits(lanes)
            valid, last, en = rng.random() < 0.8, rng.random() < 0.15, rng.random() < 0.8
            ctx.set(dut.x, x)
            ctx.set(dut.w, w)
            ctx.set(dut.valid, valid)
            ctx.set(dut.last, last)
            ctx.set(dut.en, en)
            total = (model + regs[-1][0]) % (1 << acc_width)
            assert ctx.get(dut.sum) == total
            await ctx.tick()
            if en:
                if regs[-1][1]:
                    model = 0 if regs[-1][2] else total
                regs = [(bin(x ^ w).count("1"), valid, last)] + regs[:-1]
            assert ctx.get(dut.acc) == model

    simulate(dut, bench)


@pytest.mark.parametrize("lanes, stages, count, tables", [
    (lanes, stages, count, 0) for lanes in (8, 32) for stages in (1, 2)
    for count in ("tree", "chains")] + [(32, 2, "tree", 4)])
def test_pe_planes_shift(lanes, stages, count, tables):
    # With ``planes``: a valid chunk with ``shift`` (not ``last``) doubles the accumulator
    # after adding its count (Horner's rule over bit-planes), with random enables.
    acc_width = (15 * 8 * lanes).bit_length()
    dut = ProcessingElement(lanes=lanes, acc_width=acc_width, stages=stages, count=count,
                            planes=True, tables=tables)
    rng = random.Random(lanes * 7 + stages)

    async def bench(ctx):
        model = 0
        regs = [(0, False, False, False)] * stages       # (count, valid, last, shift)
        for _ in range(500):
            x, w = rng.getrandbits(lanes), rng.getrandbits(lanes)
            valid, en = rng.random() < 0.8, rng.random() < 0.8
            last, shift = rng.random() < 0.1, rng.random() < 0.25
            for name, v in (("x", x), ("w", w), ("valid", valid), ("last", last),
                            ("shift", shift), ("en", en)):
                ctx.set(getattr(dut, name), v)
            total = (model + regs[-1][0]) % (1 << acc_width)
            assert ctx.get(dut.sum) == total
            await ctx.tick()
            if en:
                _, v, lst, sh = regs[-1]
                if v:
                    model = 0 if lst else (2 * total if sh else total) % (1 << acc_width)
                regs = [(bin(x ^ w).count("1"), valid, last, shift)] + regs[:-1]
            assert ctx.get(dut.acc) == model

    simulate(dut, bench)


def test_pe_rejects_bad_stages_and_count():
    with pytest.raises(ValueError, match="Pipeline stages must be 1 or 2, not 3"):
        ProcessingElement(lanes=32, acc_width=8, stages=3)
    with pytest.raises(ValueError, match="Count must be 'tree' or 'chains', not 'wallace'"):
        ProcessingElement(lanes=32, acc_width=8, count="wallace")
    with pytest.raises(ValueError, match="A carry-chain count needs at least 4 lanes, not 2"):
        ProcessingElement(lanes=2, acc_width=8, count="chains")
    with pytest.raises(TypeError, match="planes must be True or False, not 1"):
        ProcessingElement(lanes=8, acc_width=8, planes=1)
    with pytest.raises(ValueError, match="Table count must be a non-negative integer, not -1"):
        ProcessingElement(lanes=32, acc_width=8, stages=2, tables=-1)
    with pytest.raises(ValueError, match=r"Table-counted lanes need the two-stage tree count, "
                                         r"not count='chains' with 2 stage\(s\)"):
        ProcessingElement(lanes=32, acc_width=8, stages=2, count="chains", tables=1)
    with pytest.raises(ValueError, match=r"Table-counted lanes need .* with 1 stage\(s\)"):
        ProcessingElement(lanes=32, acc_width=8, stages=1, tables=1)
    with pytest.raises(ValueError, match="7 tables of 5 lanes need 35 lanes; the element has 32"):
        ProcessingElement(lanes=32, acc_width=8, stages=2, tables=7)


def test_pe_rejects_narrow_accumulator():
    with pytest.raises(ValueError, match="must hold one chunk's count of 32, so be at least 6"):
        ProcessingElement(lanes=32, acc_width=5)


def test_array_count_by_family():
    cfg = CoreConfig(rows=2, cols=2, lanes=32, max_k=64)
    assert ComputeArray(cfg, family="ecp5").count() == "chains"
    assert ComputeArray(cfg, family="ice40").count() == "tree"
    assert ComputeArray(cfg).count() == "tree"                 # no platform: simulation
    assert ComputeArray(CoreConfig(rows=1, cols=1, lanes=2, max_k=8), family="ecp5").count() \
        == "tree"                                              # chains need 4 lanes
    with pytest.raises(ValueError, match="Family must be None, 'ice40' or 'ecp5', not 'xc7'"):
        ComputeArray(cfg, family="xc7")


def test_array_operand_copies_by_family():
    cfg = CoreConfig(rows=2, cols=2, lanes=32, max_k=64)
    ecp5 = ComputeArray(cfg, family="ecp5")
    assert ecp5.copies() and ecp5.latency() == 3
    assert not ComputeArray(cfg, family="ice40").copies()
    assert not ComputeArray(cfg).copies() and ComputeArray(cfg).latency() == 2
    one = CoreConfig(rows=1, cols=1, lanes=32, max_k=64)
    assert not ComputeArray(one, family="ecp5").copies()
    assert not ComputeArray(cfg, family="ecp5", copies=False).copies()
    with pytest.raises(TypeError, match="copies must be None, True or False, not 1"):
        ComputeArray(cfg, copies=1)


@pytest.mark.parametrize("rows, cols, lanes, copies, latency", [
    (3, 2, 8, False, 1), (3, 2, 8, True, 2), (5, 2, 16, False, 2), (2, 6, 16, True, 3)])
def test_array_every_pair(rows, cols, lanes, copies, latency):
    # Latency: the elements' stages (one below 16 lanes, two from 16), plus one with each
    # element's operand copies. Random stalls (en low) and bubbles (valid low); every cycle,
    # every sum is checked against the chunks the array has taken.
    cfg = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=8 * lanes)
    dut = ComputeArray(cfg, copies=copies)
    assert dut.latency() == latency
    rng = np.random.default_rng(rows * 100 + cols + 1000 * copies)

    def chunk(valid, last):
        return (valid, last, rng.integers(0, 1 << lanes, rows), rng.integers(0, 1 << lanes, cols))

    chunks = []
    for n in rng.integers(1, 6, 5):
        for j in range(n):
            chunks.append(chunk(1, int(j == n - 1)))
            if rng.random() < 0.3:
                chunks.append(chunk(0, int(rng.integers(0, 2))))    # last without valid: ignored
    chunks += [chunk(0, 0) for _ in range(latency)]

    def count(ch):
        return np.array([[bin(int(ch[2][r]) ^ int(ch[3][c])).count("1") for c in range(cols)]
                         for r in range(rows)])

    async def bench(ctx):
        taken, acc, checked = [], np.zeros((rows, cols), int), 0
        while len(taken) < len(chunks):
            valid, last, x, w = chunks[len(taken)]
            en = int(rng.random() < 0.7)
            for sig, v in ((dut.en, en), (dut.valid, valid), (dut.last, last)):
                ctx.set(sig, v)
            for r in range(rows):
                ctx.set(dut.x[r], int(x[r]))
            for c in range(cols):
                ctx.set(dut.w[c], int(w[c]))
            cur = len(taken) - latency         # the chunk in the adders this cycle
            if en:
                taken.append(chunks[len(taken)])
                if cur >= 0 and chunks[cur][0]:           # ... which the accumulators take now
                    acc = np.zeros_like(acc) if chunks[cur][1] else acc + count(chunks[cur])
            await ctx.tick()
            cur = len(taken) - latency
            if cur >= 0:
                expect = acc + count(chunks[cur])
                got = [[ctx.get(dut.sum[r][c]) for c in range(cols)] for r in range(rows)]
                assert got == expect.tolist(), f"cycle with chunk {cur} in the adders"
                checked += 1
        assert checked > len(chunks) - latency

    simulate(dut, bench)


def test_core_result_stage_is_checked():
    cfg = CoreConfig(rows=2, cols=2, lanes=8, max_k=16)
    with pytest.raises(TypeError, match="result_stage must be None, True or False, not 1"):
        GemmCore(cfg, result_stage=1)
