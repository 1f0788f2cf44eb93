"""cocotb testbench of a MemoryBank on iCE40 SPRAM (Yosys's SB_SPRAM256KA model, Icarus).

Writes random words at random addresses across every block row, reads them back in random
order with idle cycles between reads (``rdata`` must hold while ``ren`` is low), and compares
with a dictionary. Parameters come as JSON in ``ONEBIT_MEMBANK_TB``: width, depth, seed.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

PARAMS = json.loads(os.environ.get("ONEBIT_MEMBANK_TB", "{}"))


@cocotb.test()
async def write_then_read_everywhere(dut):
    width, depth, seed = PARAMS["width"], PARAMS["depth"], PARAMS["seed"]
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.wen.value = 0
    dut.ren.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    # Both ends of every 16384-word block row, and random addresses.
    rows = -(-depth // 16384)
    addrs = {a for r in range(rows) for a in (r * 16384, min(depth, (r + 1) * 16384) - 1)}
    addrs |= {rng.randrange(depth) for _ in range(200)}
    model = {}
    for a in sorted(addrs, key=lambda _: rng.random()):
        model[a] = rng.getrandbits(width)
        dut.waddr.value, dut.wdata.value, dut.wen.value = a, model[a], 1
        await FallingEdge(dut.clk)
    dut.wen.value = 0
    for a in sorted(model, key=lambda _: rng.random()):
        dut.raddr.value, dut.ren.value = a, 1
        await FallingEdge(dut.clk)
        dut.ren.value = 0
        for _ in range(rng.randrange(3)):
            dut.raddr.value = rng.randrange(depth)          # not read: rdata must hold
            assert int(dut.rdata.value) == model[a], f"word {a} changed while ren was low"
            await FallingEdge(dut.clk)
        assert int(dut.rdata.value) == model[a], f"word {a}: {int(dut.rdata.value):#x} != " \
                                                 f"{model[a]:#x}"
