"""cocotb testbench of GemmCore (Icarus Verilog and Verilator), run by ``sim/cocotb_runner.py``.

A :class:`GemmTB` owns the clock, the reset, one :class:`StreamSource` per input stream (random
idle cycles), a :class:`StreamSink` on ``result`` (random backpressure) that also checks the
stream rules, and a scoreboard that compares every result with the golden model exactly.
Parameters come as JSON in ``ONEBIT_GEMM_TB``: the core configuration, a seed, the number of
random commands, and the idle/stall probabilities.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge

from ..hdl.core.gemm_layouts import COUNTERS, command_layout, counters_layout, result_layout
from ..host.core_config import CoreConfig, Op
from ..host.core_streams import decode_results, encode_gemm, expected_gemm

PARAMS = json.loads(os.environ.get("ONEBIT_GEMM_TB", "{}"))


def high(signal) -> bool:
    """Whether a 1-bit signal is 1 (an unresolved X or Z, before reset, reads as 0)."""
    value = signal.value
    return value.is_resolvable and bool(value)


class StreamSource:
    """Drives ``<name>__valid/payload``; idles a cycle with probability ``idle``; keeps ``valid``
    and ``payload`` steady until ``ready`` (rule 2), and never looks at ``ready`` to decide
    ``valid`` (rule 3). With nothing queued it sleeps until ``send`` (no work per cycle, so a
    long computation simulates at the simulator's speed)."""

    def __init__(self, dut, name: str, clk, rng: random.Random, idle: float):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng, self.idle = clk, rng, idle
        self.queue: deque[int] = deque()
        self.current: int | None = None
        self.queued = Event()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def clear(self) -> None:
        """Forget everything queued (after a reset)."""
        self.queue.clear()
        self.current = None
        self.valid.value = 0

    def send(self, items) -> None:
        self.queue.extend(int(i) for i in items)
        self.queued.set()

    @property
    def idle_now(self) -> bool:
        return self.current is None and not self.queue

    async def _run(self):
        # Inputs change on the falling edge and are sampled (ReadOnly) before the rising edge
        # that transfers them, so no write races the edge that samples it.
        while True:
            await FallingEdge(self.clk)
            if self.current is None:
                if self.queue and self.rng.random() >= self.idle:
                    self.current = self.queue.popleft()
                    self.payload.value = self.current
                    self.valid.value = 1
                else:
                    self.valid.value = 0
                    if not self.queue:
                        self.queued.clear()
                        await self.queued.wait()
                        continue
            await ReadOnly()
            if self.current is not None and high(self.ready):
                self.current = None


class StreamSink:
    """Drives ``ready`` low with probability ``stall``; collects payloads; asserts that a valid
    payload stays valid and unchanged until it is taken. With ``stall`` > 0, a cycle without
    ``valid`` makes it hold ``ready`` low and sleep until ``valid`` rises (no work per cycle)."""

    def __init__(self, dut, name: str, clk, rng: random.Random, stall: float):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng, self.stall = clk, rng, stall
        self.items: list[int] = []
        self.held: int | None = None
        self.ready.value = 0
        cocotb.start_soon(self._run())

    def clear(self) -> None:
        self.items.clear()
        self.held = None

    async def _run(self):
        waiting = False
        while True:
            await FallingEdge(self.clk)
            if waiting and self.stall > 0 and not high(self.valid):
                # Nothing offered: hold ``ready`` low (a stall) and sleep until ``valid`` rises.
                self.ready.value = 0
                await RisingEdge(self.valid)
                await FallingEdge(self.clk)
            self.ready.value = int(self.rng.random() >= self.stall)
            await ReadOnly()
            valid = high(self.valid)
            if self.held is not None:
                assert valid, "result: valid dropped before the transfer"
                assert self.payload.value.to_unsigned() == self.held, \
                    "result: payload changed while valid and not ready"
            if valid and high(self.ready):
                self.items.append(self.payload.value.to_unsigned())
                self.held = None
            elif valid:
                self.held = self.payload.value.to_unsigned()
            waiting = not valid


class GemmTB:
    """Clock, reset, drivers, monitor and scoreboard around one GemmCore."""

    def __init__(self, dut, cfg: CoreConfig, *, seed: int, idle: float, stall: float):
        self.dut, self.cfg = dut, cfg
        dut.rst.value = 1
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()       # (in C: no Python a cycle)
        self.cmd = StreamSource(dut, "cmd", dut.clk, self.rng, idle)
        self.act = StreamSource(dut, "act", dut.clk, self.rng, idle)
        self.weight = StreamSource(dut, "weight", dut.clk, self.rng, idle)
        self.thresh = StreamSource(dut, "thresh", dut.clk, self.rng, idle)
        self.result = StreamSink(dut, "result", dut.clk, self.rng, stall)
        self.cmd_layout = command_layout(cfg)
        self.result_layout = result_layout(cfg)
        self.thr_mask = (1 << cfg.threshold_width) - 1
        self.checked = 0

    def counters(self) -> dict[str, int]:
        """Read the core's performance counters."""
        raw = counters_layout().from_bits(self.dut.counters.value.to_unsigned())
        return {name: int(getattr(raw, name)) for name in COUNTERS}

    async def reset(self, cycles: int = 2) -> None:
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        for s in (self.cmd, self.act, self.weight, self.thresh):
            s.clear()
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.result.clear()

    def random_case(self, *, k_max: int | None = None):
        """A random command: shape, op, thresholds and (on a core of ``max_bits > 1``) the
        activation bits, whose XOR products take rows of that many planes."""
        cfg, rng = self.cfg, self.np_rng
        bits = int(rng.integers(1, cfg.max_bits + 1))
        t = int(rng.integers(1, cfg.max_t + 1))
        n = int(rng.integers(1, cfg.max_n + 1))
        k = int(rng.integers(1, min(k_max or cfg.max_k, cfg.max_k_at(bits)) + 1))
        op = Op(int(rng.integers(0, 2))) if bits == 1 else Op.XOR
        x = rng.integers(0, 1 << bits, (t, k), dtype=np.uint8)
        w = rng.integers(0, 2, (n, k), dtype=np.uint8)
        bound = ((1 << bits) - 1) * k
        thr = rng.integers(-bound - 3, bound + 4, n) if rng.integers(0, 2) else None
        return op, x, w, thr, bits

    def submit(self, op, x, w, thr, bits=1):
        """Queue one command's beats on every input stream; return its stream description."""
        s = encode_gemm(self.cfg, op, x, w, thr, bits=bits)
        self.cmd.send([self.cmd_layout.const(s.cmd).as_value().value])
        self.act.send(s.act)
        self.weight.send(s.weight)
        self.thresh.send(v & self.thr_mask for v in s.thresh)
        return s

    async def run_case(self, op, x, w, thr, act_bits=1, *,
                       timeout: int = 500_000) -> dict[str, int]:
        """Run one command to completion and compare it with the golden model."""
        s = self.submit(op, x, w, thr, act_bits)
        start = len(self.result.items)
        for _ in range(timeout):
            await RisingEdge(self.dut.clk)
            if len(self.result.items) - start >= s.result_beats:
                break
        else:
            state = {name: str(getattr(self.dut, name).value) for name in (
                "busy", "cmd__ready", "act__ready", "weight__ready", "thresh__ready",
                "result__valid")}
            queued = {s_.valid._name: len(s_.queue) + (s_.current is not None) for s_ in
                      (self.cmd, self.act, self.weight, self.thresh)}
            raise TimeoutError(f"no result after {timeout} cycles for T, N, K = {x.shape[0]}, "
                               f"{w.shape[0]}, {x.shape[1]}; {len(self.result.items) - start}"
                               f" of {s.result_beats} beats; core {state}; queued {queued}")
        raw = self.result.items[start:start + s.result_beats]
        beats = []
        for r in raw:
            v = self.result_layout.from_bits(r)
            beats.append(([int(i) for i in v.ints], int(v.bits), int(v.last)))
        ints, bits = decode_results(self.cfg, x.shape[0], w.shape[0], beats,
                                    thresholded=thr is not None)
        exp_ints, exp_bits = expected_gemm(op, x, w, thr, bits=act_bits)
        shape = f"{op.name} T,N,K = {x.shape[0]},{w.shape[0]},{x.shape[1]} at {act_bits} bits"
        if thr is None:
            assert (ints == exp_ints).all(), f"ints differ for {shape}"
        else:
            assert (bits == exp_bits).all(), f"bits differ for {shape}"
        for src in (self.cmd, self.act, self.weight, self.thresh):
            assert src.idle_now, "the core finished without consuming all of its input"
        self.checked += 1
        await RisingEdge(self.dut.clk)
        return self.counters()


def _tb(dut) -> GemmTB:
    cfg = CoreConfig(**PARAMS["config"])
    return GemmTB(dut, cfg, seed=PARAMS.get("seed", 0), idle=PARAMS.get("idle", 0.3),
                  stall=PARAMS.get("stall", 0.3))


@cocotb.test(skip="bench" in PARAMS)
async def random_commands(dut):
    """Random shapes (T, N, K up to the configured maxima), both ops, random thresholds."""
    tb = _tb(dut)
    await tb.reset()
    for _ in range(PARAMS.get("cases", 5)):
        await tb.run_case(*tb.random_case())
    assert tb.checked == PARAMS.get("cases", 5)


@cocotb.test(skip="bench" in PARAMS)
async def reset_mid_operation(dut):
    """A reset in the middle of a command, then a command that must be exact."""
    tb = _tb(dut)
    await tb.reset()
    for abort_after in (5, 60):
        tb.submit(*tb.random_case())
        for _ in range(abort_after):
            await RisingEdge(dut.clk)
        await tb.reset()
        await tb.run_case(*tb.random_case(k_max=min(tb.cfg.max_k, 300)))


@cocotb.test(skip="bench" in PARAMS)
async def bad_command_then_good(dut):
    """A command with K = 0 is rejected (cmd_error pulses), and the next one works."""
    tb = _tb(dut)
    await tb.reset()
    cmd = {"op": Op.XOR, "threshold": 0, "t": 1, "n": 1, "k": 0}
    tb.cmd.send([tb.cmd_layout.const(cmd).as_value().value])
    seen = False
    for _ in range(20):
        await RisingEdge(dut.clk)
        await ReadOnly()
        seen |= high(dut.cmd_error)
    assert seen, "cmd_error did not pulse for K = 0"
    await tb.run_case(*tb.random_case(k_max=100))


@cocotb.test(skip="bench" not in PARAMS)
async def benchmark(dut):
    """Run the GEMM shapes in ``PARAMS["bench"]`` without stalls; write each one's counters."""
    tb = _tb(dut)
    await tb.reset()
    rng = np.random.default_rng(PARAMS.get("seed", 0))
    out = []
    for t, n, k, op, bits in PARAMS["bench"]:
        x = rng.integers(0, 1 << bits, (t, k), dtype=np.uint8)
        w = rng.integers(0, 2, (n, k), dtype=np.uint8)
        counters = await tb.run_case(Op[op], x, w, rng.integers(-k, k + 1, n), bits)
        out.append({"t": t, "n": n, "k": k, "op": op, "bits": bits, **counters})
    with open(PARAMS["out"], "w") as f:
        json.dump(out, f)
