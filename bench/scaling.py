"""``onebit bench scaling``: build the whole design at several array sizes on each board and
tabulate LUT4 per lane, Fmax and GOPS per 1000 LUT4 (minutes per build; builds are cached).

LUT4 per lane is the whole design's LUT4 (host link, stores' logic, controller and array)
divided by the lanes, so it falls as the array grows over the fixed link and control logic; the
marginal cost, between two sizes on one board, is the array's own. GOPS are 2 operations per
lane per cycle at Fmax (what the array could do with a clock at Fmax; the build report's
``peak_gops`` uses ``min(Fmax, clock)``).
"""

from __future__ import annotations

import sys

from .. import json_output
from ..flow.boards import board
from ..flow.build import BuildError, BuildRequest, build
from ..flow.logs import one_line

# (board, rows, cols, lanes): small to large on each part.
SIZES = {
    "icebreaker": [(1, 1, 16), (2, 1, 16), (4, 1, 16)],
    "ulx3s-25f": [(2, 2, 32), (4, 4, 32)],
    "ulx3s-85f": [(4, 4, 32), (8, 8, 32)],
}


def _row(name: str, rows: int, cols: int, lanes: int) -> dict:
    b = board(name)
    dev = b.device.reshaped(rows=rows, cols=cols, lanes=lanes)
    entry = {"board": name, "rows": rows, "cols": cols, "lanes": lanes,
             "total_lanes": rows * cols * lanes}
    try:
        # (The board's first placement seed only: a size that misses its clock would
        # otherwise be built with every seed of the board's list.)
        r = build(BuildRequest(name, device=dev, require_timing=False,
                               seeds=b.seeds[:1] or None),
                  out=lambda *a: print(*a, file=sys.stderr), json_out=True)
    except BuildError as e:
        entry["error"] = one_line(str(e))
        return entry
    lut = r["utilization"]["LUT4"]
    fmax = min(f["achieved_mhz"] for f in r["fmax"].values())
    entry.update(lut4=lut["used"], lut4_available=lut["available"], fmax_mhz=round(fmax, 1),
                 target_mhz=r["clock_mhz"], lut4_per_lane=round(lut["used"] /
                                                                entry["total_lanes"], 2),
                 gops_at_fmax=round(2 * entry["total_lanes"] * fmax / 1e3, 2),
                 gops_per_1000_lut4_at_fmax=round(2 * entry["total_lanes"] * fmax / lut["used"],
                                                  2))
    return entry


def run(*, json_out: bool, boards: list[str] | None = None) -> int:
    names = boards or list(SIZES)
    table = [_row(n, *size) for n in names for size in SIZES[n]]
    if json_out:
        print(json_output.dumps(table))
        return 0
    print(f"{'board':<12}{'array':>12}{'lanes':>7}{'LUT4':>8}{'/lane':>7}{'Fmax':>8}"
          f"{'target':>8}{'GOPS':>8}{'/kLUT4':>8}")
    for e in table:
        array = f"{e['rows']}x{e['cols']}x{e['lanes']}"
        if "error" in e:
            print(f"{e['board']:<12}{array:>12}{e['total_lanes']:>7}  {e['error']}")
            continue
        print(f"{e['board']:<12}{array:>12}{e['total_lanes']:>7}{e['lut4']:>8}"
              f"{e['lut4_per_lane']:>7.2f}{e['fmax_mhz']:>8.1f}{e['target_mhz']:>8.1f}"
              f"{e['gops_at_fmax']:>8.2f}{e['gops_per_1000_lut4_at_fmax']:>8.2f}")
    return 0
