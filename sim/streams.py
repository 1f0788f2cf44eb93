"""Stream drivers for Amaranth's simulator: producers with random idle cycles, consumers with
random backpressure. Each is an async testbench body (``ctx`` from ``Simulator.add_testbench``);
``simulate`` runs testbenches over a design.
"""

from __future__ import annotations

import random

from amaranth.sim import Simulator

__all__ = ["put_all", "get_all", "simulate"]


async def put_all(ctx, stream, payloads, *, rng: random.Random, idle: float = 0.0) -> None:
    """Send each payload on ``stream``, inserting an idle cycle with probability ``idle``."""
    for payload in payloads:
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.payload, payload)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def get_all(ctx, stream, count: int, *, rng: random.Random, stall: float = 0.0,
                  convert=lambda p: p) -> list:
    """Receive ``count`` payloads, holding ``ready`` low each cycle with probability ``stall``."""
    out = []
    while len(out) < count:
        ready = rng.random() >= stall
        ctx.set(stream.ready, int(ready))
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            out.append(convert(payload))
    ctx.set(stream.ready, 0)
    return out


def simulate(dut, *testbenches, clocked: bool = True) -> None:
    """Run ``testbenches`` (async functions of ``ctx``) on Amaranth's simulator over ``dut``,
    with a 100 MHz clock on its ``sync`` domain if ``clocked``, until they return."""
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-8)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run()
