"""Run GemmCore commands on Amaranth's simulator with random stalls on every stream.

The testbench: one producer per input stream (``cmd``, ``act``, ``weight``, ``thresh``), each
with random idle cycles, one consumer of ``result`` with random backpressure, and a scoreboard
(the caller compares what :func:`run_commands` returns with the golden model).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from ..hdl.core.gemm import GemmCore
from ..host.core_config import CoreConfig
from ..host.core_streams import GemmStreams, decode_results
from .streams import put_all

__all__ = ["GemmRun", "run_commands"]


@dataclass
class GemmRun:
    """What one command gave: results (or ``rejected``) and the core's counters after it."""

    ints: object = None
    bits: object = None
    rejected: bool = False
    counters: dict | None = None


def _beat(p):
    return ([int(v) for v in p.ints], int(p.bits), int(p.last))


def run_commands(cfg: CoreConfig, commands: list[GemmStreams], *, seed: int = 0,
                 idle: float = 0.3, stall: float = 0.3, abort_after: int | None = None,
                 vcd: str | None = None, operand_copies: bool | None = None,
                 result_stage: bool | None = None) -> list[GemmRun]:
    """Run ``commands`` in order; return one :class:`GemmRun` each.

    With ``abort_after``, the first command is interrupted by a reset after that many cycles
    (its streams are abandoned) and the remaining commands run after the reset.
    ``operand_copies`` is ``GemmCore``'s (the array's per-element operand registers, as on ECP5),
    and so is ``result_stage`` (False: the results computed as the shadow takes them, as on
    iCE40).
    """
    dut = GemmCore(cfg, operand_copies=operand_copies, result_stage=result_stage)
    soft_rst = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(soft_rst)(dut)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    rng = random.Random(seed)
    runs: list[GemmRun] = []
    timeout = 200_000

    async def bench(ctx):
        todo = list(commands)
        if abort_after is not None:
            first = todo.pop(0)

            ctx.set(dut.cmd.payload, first.cmd)
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            sent_act = sent_w = 0
            for _ in range(abort_after):   # feed some of it, then pull reset mid-operation
                if sent_act < len(first.act):
                    ctx.set(dut.act.payload, first.act[sent_act])
                ctx.set(dut.act.valid, int(sent_act < len(first.act)))
                if sent_w < len(first.weight):
                    ctx.set(dut.weight.payload, first.weight[sent_w])
                ctx.set(dut.weight.valid, int(sent_w < len(first.weight)))
                ctx.set(dut.result.ready, 1)
                _, _, ar, wr = await ctx.tick().sample(dut.act.ready, dut.weight.ready)
                sent_act += ar and sent_act < len(first.act)
                sent_w += wr and sent_w < len(first.weight)
            for s in (dut.act, dut.weight):
                ctx.set(s.valid, 0)
            ctx.set(dut.result.ready, 0)
            ctx.set(soft_rst, 1)
            await ctx.tick()
            ctx.set(soft_rst, 0)
            runs.append(GemmRun(rejected=False, counters=None))
        for cmd in todo:
            results: list = []
            await put_all(ctx, dut.cmd, [cmd.cmd], rng=rng, idle=idle)
            # A rejected command pulses cmd_error the cycle after it was taken.
            _, _, rejected = await ctx.tick().sample(dut.cmd_error)
            if rejected:
                runs.append(GemmRun(rejected=True))
                continue
            # Producers and the consumer interleave cycle by cycle in one coroutine each.
            streams = [(dut.act, iter(cmd.act)), (dut.weight, iter(cmd.weight)),
                       (dut.thresh, iter(cmd.thresh))]
            pending = [next(it, None) for _, it in streams]
            for _ in range(timeout):
                if len(results) == cmd.result_beats:
                    break
                for i, (s, _) in enumerate(streams):   # valid, once raised, stays until taken
                    if pending[i] is not None and rng.random() >= idle:
                        ctx.set(s.payload, pending[i])
                        ctx.set(s.valid, 1)
                ready = rng.random() >= stall
                ctx.set(dut.result.ready, int(ready))
                _, _, *sampled = await ctx.tick().sample(
                    *(x for s, _ in streams for x in (s.valid, s.ready)),
                    dut.result.valid, dut.result.payload)
                for i, (s, it) in enumerate(streams):
                    if sampled[2 * i] and sampled[2 * i + 1]:
                        pending[i] = next(it, None)
                        ctx.set(s.valid, 0)
                if ready and sampled[-2]:
                    results.append(_beat(sampled[-1]))
            else:
                raise TimeoutError("GemmCore did not finish the command")
            ctx.set(dut.result.ready, 0)
            for _ in range(3):
                await ctx.tick()
            if any(p is not None for p in pending):
                raise AssertionError("the core finished without consuming all of its input")
            t, n = cmd.cmd["t"], cmd.cmd["n"]
            ints, bits = decode_results(cfg, t, n, results,
                                        thresholded=bool(cmd.cmd["threshold"]))
            counters = {name: int(ctx.get(getattr(dut.counters, name)))
                        for name in ("busy", "active", "stall", "weight_wait", "backpressure")}
            runs.append(GemmRun(ints=ints, bits=bits, counters=counters))
            if ctx.get(dut.busy):
                raise AssertionError("the core is still busy after its last result")

    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return runs
