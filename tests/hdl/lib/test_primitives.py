# amaranth: UnusedElaboratable=no
"""Amaranth-simulator unit tests of the primitives (popcount, memory bank), exact against simple
models."""

import random

import pytest

from onebit.hdl.lib.membank import MemoryBank
from onebit.hdl.lib.popcount import Popcount
from onebit.host.core_config import CoreConfig
from onebit.sim.streams import simulate


@pytest.mark.parametrize("width", [1, 2, 3, 7, 32, 33, 64])
def test_popcount(width):
    dut = Popcount(width=width)
    rng = random.Random(width)
    values = [0, (1 << width) - 1] + [rng.getrandbits(width) for _ in range(200)]

    async def bench(ctx):
        for v in values:
            ctx.set(dut.i, v)
            assert ctx.get(dut.o) == bin(v).count("1")

    simulate(dut, bench, clocked=False)


def test_popcount_rejects_bad_width():
    with pytest.raises(ValueError, match="Popcount width must be a positive integer, not 0"):
        Popcount(width=0)


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

    simulate(dut, bench)


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
