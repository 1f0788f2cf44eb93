# amaranth: UnusedElaboratable=no
"""Amaranth-simulator unit tests of each gateware component, exact against simple models."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from onebit.hdl.array import ComputeArray
from onebit.hdl.membank import MemoryBank
from onebit.hdl.pe import ProcessingElement
from onebit.hdl.popcount import Popcount
from onebit.host.core_config import CoreConfig


def run(dut, bench, *, clocked=True):
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("width", [1, 2, 3, 7, 32, 33, 64])
def test_popcount(width):
    dut = Popcount(width=width)
    rng = random.Random(width)
    values = [0, (1 << width) - 1] + [rng.getrandbits(width) for _ in range(200)]

    async def bench(ctx):
        for v in values:
            ctx.set(dut.i, v)
            assert ctx.get(dut.o) == bin(v).count("1")

    run(dut, bench, clocked=False)


def test_popcount_rejects_bad_width():
    with pytest.raises(ValueError, match="Popcount width must be a positive integer, not 0"):
        Popcount(width=0)


@pytest.mark.parametrize("stages", [1, 2])
@pytest.mark.parametrize("lanes, count", [(lanes, count) for lanes in (1, 5, 8, 32, 64)
                                          for count in ("tree", "chains")
                                          if count == "tree" or lanes >= 4])
def test_pe_accumulate_clear_hold(lanes, stages, count):
    acc_width = (8 * lanes).bit_length()
    dut = ProcessingElement(lanes=lanes, acc_width=acc_width, stages=stages, count=count)
    assert dut.latency == stages
    rng = random.Random(lanes * 10 + stages)

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

    run(dut, bench)


def test_pe_rejects_bad_stages_and_count():
    with pytest.raises(ValueError, match="Pipeline stages must be 1 or 2, not 3"):
        ProcessingElement(lanes=32, acc_width=8, stages=3)
    with pytest.raises(ValueError, match="Count must be 'tree' or 'chains', not 'wallace'"):
        ProcessingElement(lanes=32, acc_width=8, count="wallace")
    with pytest.raises(ValueError, match="A carry-chain count needs at least 4 lanes, not 2"):
        ProcessingElement(lanes=2, acc_width=8, count="chains")


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


def test_array_every_pair():
    cfg = CoreConfig(rows=3, cols=2, lanes=8, max_k=40)
    dut = ComputeArray(cfg)
    rng = np.random.default_rng(1)
    chunks = 5
    x = rng.integers(0, 256, (cfg.rows, chunks))
    w = rng.integers(0, 256, (cfg.cols, chunks))

    async def bench(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.valid, 1)
        for j in range(chunks):
            ctx.set(dut.last, j == chunks - 1)
            for r in range(cfg.rows):
                ctx.set(dut.x[r], int(x[r, j]))
            for c in range(cfg.cols):
                ctx.set(dut.w[c], int(w[c, j]))
            await ctx.tick()
        ctx.set(dut.valid, 0)                   # latency 1: the sums the cycle after
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                expect = sum(bin(int(x[r, j]) ^ int(w[c, j])).count("1") for j in range(chunks))
                assert ctx.get(dut.sum[r][c]) == expect

    run(dut, bench)


def test_memory_bank_read_latency_and_hold():
    dut = MemoryBank(width=12, depth=20)
    rng = random.Random(2)
    data = [rng.getrandbits(12) for _ in range(20)]

    async def bench(ctx):
        ctx.set(dut.wen, 1)
        for a, v in enumerate(data):
            ctx.set(dut.waddr, a)
            ctx.set(dut.wdata, v)
            await ctx.tick()
        ctx.set(dut.wen, 0)
        for a in rng.sample(range(20), 20):
            ctx.set(dut.raddr, a)
            ctx.set(dut.ren, 1)
            await ctx.tick()
            assert ctx.get(dut.rdata) == data[a]
            ctx.set(dut.ren, 0)
            ctx.set(dut.raddr, (a + 1) % 20)
            await ctx.tick()
            assert ctx.get(dut.rdata) == data[a]   # holds while ren is low

    run(dut, bench)


def test_memory_bank_validation():
    with pytest.raises(ValueError, match="Memory kind must be one of bram, ice40_spram, not 'x'"):
        MemoryBank(width=8, depth=8, kind="x")
    with pytest.raises(ValueError, match="A 8-bit SPRAM bank of 70000 words needs 5 "
                                         "SB_SPRAM256KA blocks; the iCE40 UP5K has 4"):
        MemoryBank(width=8, depth=70000, kind="ice40_spram")
    assert MemoryBank(width=32, depth=20000, kind="ice40_spram").spram_blocks == 4
    with pytest.raises(ValueError, match="A 33-bit SPRAM bank of 20000 words needs 6"):
        MemoryBank(width=33, depth=20000, kind="ice40_spram")
    with pytest.raises(ValueError, match="Weight memory must be one of bram, ice40_spram"):
        CoreConfig(weight_memory="sram")
