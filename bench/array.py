"""``onebit bench array``: the compute array alone, placed and routed on each board's part.

The whole design's figures (``onebit bench scaling``) are dominated by the host link and
control logic at the array sizes that fit; this bench builds the array by itself
(``hdl/board/array_bench_top.py``: operands from a shift register standing for the core's registered
buses, every element's top sum bit folded to a pin) at several sizes, with the clock
constrained at the issue's targets (48 MHz on the UP5K, 150 MHz on ECP5), and prints:

- array LUT4: the array's own logic from Yosys (``synth_ice40`` / ``synth_ecp5`` of
  ``ComputeArray``; an ECP5 CCU2C counts as two LUT4), and per lane;
- placed LUT4: nextpnr's logic cells of the whole harness (on iCE40 these include the
  operand shift register's flip-flop-only cells);
- placed FF: the harness's flip-flops (on ECP5 with each element's operand copies);
- latency: the array's ``en`` cycles from operands to sums (``ComputeArray.latency()``);
- Fmax of the placed design, and GOPS (2 operations per lane per cycle) at Fmax, per 1000 of
  the array's LUT4.

Builds are cached like every ``onebit build`` (``build/boards/<board>-array-<hash>``).
"""

from __future__ import annotations

import sys
from dataclasses import replace

from .. import json_output
from ..flow.boards import board
from ..flow.build import BuildError, BuildRequest, build
from ..flow.logs import one_line

# (rows, cols, lanes) per board, small to large, and the clock each is constrained at. (On the
# 85F a 16 x 16 x 32 array, each operand bus feeding 16 elements, was still routing after 46
# minutes; 12 columns are not a valid 85F device, whose layer engine needs frames of whole
# parameter words.)
SIZES = {
    "icebreaker": [(2, 1, 32), (4, 4, 16), (8, 8, 16)],
    "ulx3s-25f": [(4, 4, 32), (8, 8, 32)],
    "ulx3s-85f": [(8, 8, 32), (16, 8, 32)],
}
TARGET_MHZ = {"ice40": 48.0, "ecp5": 150.0}


def _row(name: str, rows: int, cols: int, lanes: int, *, out) -> dict:
    from ..flow.synth import lut4_count, synth_stats
    from ..hdl.core.array import ComputeArray

    b = board(name)
    core = b.device.core.reshaped(rows=rows, cols=cols, lanes=lanes)
    lanes_total = rows * cols * lanes
    entry = {"board": name, "rows": rows, "cols": cols, "lanes": lanes,
             "total_lanes": lanes_total, "pe_stages": core.pe_stages,
             "target_mhz": TARGET_MHZ[b.family]}
    array = ComputeArray(core, family=b.family)
    count = array.count()
    if core.count_tables:
        count += f"+{core.count_tables}t"        # and tables of 5 lanes in each element
    entry.update(count=count, count_tables=core.count_tables, copies=array.copies(),
                 latency=array.latency())
    entry["array_lut4"] = lut4_count(synth_stats(array, "array", b.family), b.family)
    entry["array_lut4_per_lane"] = round(entry["array_lut4"] / lanes_total, 2)
    try:
        r = build(BuildRequest(name, device=replace(b.device, core=core),
                               clock_mhz=TARGET_MHZ[b.family], require_timing=False,
                               array_only=True), out=out, json_out=True)
    except BuildError as e:
        entry["error"] = one_line(str(e))
        return entry
    fmax = min(f["achieved_mhz"] for f in r["fmax"].values())
    gops = 2 * lanes_total * fmax / 1e3
    entry.update(placed_lut4=r["utilization"]["LUT4"]["used"],
                 placed_ff=r["utilization"]["FF"]["used"],
                 lut4_available=r["utilization"]["LUT4"]["available"],
                 fmax_mhz=round(fmax, 1), gops_at_fmax=round(gops, 1),
                 gops_per_1000_lut4=round(1000 * gops / entry["array_lut4"], 1))
    return entry


def run(*, json_out: bool, boards: list[str] | None = None) -> int:
    names = boards or list(SIZES)
    for n in names:
        if n not in SIZES:
            raise ValueError(f"no array sizes for board {n!r}; boards: {', '.join(SIZES)}")
    progress = (lambda *a: print(*a, file=sys.stderr)) if json_out else (lambda *a: None)
    table = [_row(n, *size, out=progress) for n in names for size in SIZES[n]]
    if json_out:
        print(json_output.dumps(table))
        return 0
    print(f"{'board':<12}{'array':>10}{'lanes':>7}{'latency':>8}{'count':>9}{'LUT4':>8}"
          f"{'/lane':>7}{'placed':>8}{'FF':>7}{'Fmax':>8}{'target':>8}{'GOPS':>8}{'/kLUT4':>8}")
    for e in table:
        array = f"{e['rows']}x{e['cols']}x{e['lanes']}"
        head = (f"{e['board']:<12}{array:>10}{e['total_lanes']:>7}{e['latency']:>8}"
                f"{e['count']:>9}"
                f"{e['array_lut4']:>8}{e['array_lut4_per_lane']:>7.2f}")
        if "error" in e:
            print(f"{head}  {e['error']}")
            continue
        print(f"{head}{e['placed_lut4']:>8}{e['placed_ff']:>7}{e['fmax_mhz']:>8.1f}"
              f"{e['target_mhz']:>8.1f}"
              f"{e['gops_at_fmax']:>8.1f}{e['gops_per_1000_lut4']:>8.1f}")
    return 0
