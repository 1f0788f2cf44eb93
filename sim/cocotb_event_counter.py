"""cocotb testbench of an EventCounter (on iCE40 UltraPlus: Yosys's SB_MAC16 model, Icarus).

Against a model of the contract (a cycle's ``inc`` shows in ``count`` the next cycle, ``clear``
restarts at 0 and drops that cycle's ``inc``, the domain's reset clears): a run of increments
past 2**16 (the lower half's carry into the upper), then random increments and clears, then a
reset in the middle of a count. Parameters come as JSON in ``ONEBIT_EVENT_COUNTER_TB``: width,
seed.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

PARAMS = json.loads(os.environ.get("ONEBIT_EVENT_COUNTER_TB", "{}"))


class Model:
    def __init__(self, width: int):
        self.mask, self.count = (1 << width) - 1, 0

    def step(self, inc: int, clear: int, rst: int) -> None:
        self.count = 0 if (clear or rst) else (self.count + inc) & self.mask


@cocotb.test()
async def counts_clears_and_carries(dut):
    width, rng = PARAMS["width"], random.Random(PARAMS["seed"])
    model = Model(width)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def cycle(inc: int, clear: int = 0, rst: int = 0) -> None:
        dut.inc.value, dut.clear.value, dut.rst.value = inc, clear, rst
        await FallingEdge(dut.clk)
        model.step(inc, clear, rst)
        got = int(dut.count.value)
        assert got == model.count, f"count {got:#x}, expected {model.count:#x} " \
                                   f"(inc={inc}, clear={clear}, rst={rst})"

    await cycle(0, rst=1)
    await cycle(1, rst=1)
    for _ in range((1 << 16) + 40):                  # across the halves' carry
        await cycle(1)
    for _ in range(3000):
        await cycle(int(rng.random() < 0.6), int(rng.random() < 0.01))
    await cycle(1, clear=1)
    for _ in range(100):
        await cycle(int(rng.random() < 0.5))
    await cycle(1, rst=1)
    await cycle(1)
    assert model.count == 1
