"""The build's report: resources against the part's totals, Fmax per clock, peak binary GOPS;
read from nextpnr's JSON report and Yosys's cell counts, and printed as a table."""

from __future__ import annotations

from pathlib import Path

from .boards import Board

__all__ = ["CELLS", "parse_report", "summarise", "format_report"]

# nextpnr's names for each family's cells, mapped to the report's resource names.
CELLS = {"ice40": {"ICESTORM_LC": "LUT4", "ICESTORM_RAM": "BRAM", "ICESTORM_SPRAM": "SPRAM",
                   "ICESTORM_DSP": "DSP"},
         "ecp5": {"TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "DP16KD": "BRAM",
                  "MULT18X18D": "DSP"}}


def parse_report(report: dict, family: str, *, cells: dict[str, int] | None = None,
                 totals: dict[str, int] | None = None) -> dict:
    """Resource use and Fmax from nextpnr's ``--report`` JSON; with ``cells`` (Yosys's cell
    counts, :func:`synth_cells`) and the part's ``totals`` also the flip-flops and carry cells
    that nextpnr's table folds into its logic cells, and every resource of ``totals`` (a
    resource the design does not use shows as 0 used)."""
    util = {}
    for cell, use in report.get("utilization", {}).items():
        name = CELLS[family].get(cell)
        if name:
            util[name] = {"used": int(use["used"]), "available": int(use["available"])}
    totals = totals or {}
    if cells is not None:
        extra = {"CARRY": cells.get("SB_CARRY" if family == "ice40" else "CCU2C", 0)}
        if family == "ice40":
            extra["FF"] = sum(n for cell, n in cells.items() if cell.startswith("SB_DFF"))
        for name, used in extra.items():
            if name not in util and totals.get(name):
                util[name] = {"used": used, "available": totals[name]}
    for name, available in totals.items():
        if available and name not in util:
            util[name] = {"used": 0, "available": available}
    fmax = {}
    for clock, f in report.get("fmax", {}).items():
        fmax[clock] = {"achieved_mhz": float(f["achieved"]),
                       "constraint_mhz": float(f["constraint"])}
    return {"utilization": util, "fmax": fmax}


def summarise(b: Board, parsed: dict, seconds: float, folder: Path) -> dict:
    c = b.device.core
    clock_mhz = b.clock_hz() / 1e6
    fmax = min((f["achieved_mhz"] for f in parsed["fmax"].values()), default=0.0)
    luts = parsed["utilization"].get("LUT4", {}).get("used", 0)
    gops = c.peak_ops_per_cycle * min(fmax, clock_mhz) / 1e3
    return {
        "board": b.name, "device": b.description, "array": {"rows": c.rows, "cols": c.cols,
                                                            "lanes": c.lanes},
        "clock_mhz": clock_mhz, "utilization": parsed["utilization"], "fmax": parsed["fmax"],
        "peak_gops": gops, "gops_per_1000_lut4": 1000 * gops / luts if luts else 0.0,
        "build_seconds": round(seconds, 1), "bitstream": str(folder / ("top.bin" if b.family ==
                                                                       "ice40" else "top.bit")),
    }


def format_report(r: dict) -> str:
    a = r["array"]
    lines = [f"{r['device']}: array {a['rows']} x {a['cols']} x {a['lanes']} at "
             f"{r['clock_mhz']:.1f} MHz", f"  {'resource':<10}{'used':>8}{'of':>8}{'%':>7}"]
    for name, u in sorted(r["utilization"].items()):
        pct = 100 * u["used"] / u["available"] if u["available"] else 0.0
        lines.append(f"  {name:<10}{u['used']:>8}{u['available']:>8}{pct:>6.1f}%")
    for clock, f in r["fmax"].items():
        ok = "ok" if f["achieved_mhz"] >= f["constraint_mhz"] else "MISSED"
        lines.append(f"  clock {clock}: Fmax {f['achieved_mhz']:.1f} MHz, target "
                     f"{f['constraint_mhz']:.1f} MHz ({ok})")
    lines.append(f"  peak {r['peak_gops']:.1f} binary GOPS, {r['gops_per_1000_lut4']:.2f} GOPS "
                 f"per 1000 LUT4")
    p = r.get("placement")
    if p and (p["seed"] is not None or len(p["tried"]) > 1):
        tried = ", ".join(f"{'default' if t['seed'] is None else t['seed']}: "
                          + (f"{t['fmax_mhz']:.1f} MHz" if t["placed"] else "did not place")
                          for t in p["tried"])
        lines.append(f"  placement seed {p['seed']} (tried {tried})")
    if r.get("synthesis", "top.ys") != "top.ys":
        lines.append(f"  synthesised by the fallback {r['synthesis']} (classic ABC), after "
                     f"Yosys failed an internal assertion in ABC9 (docs/build.md)")
    lines.append(f"  bitstream: {r['bitstream']}")
    return "\n".join(lines)
