"""``onebit sweep``: the command around ``onebit.flow.sweep`` (grid, Dask jobs, table, plot)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["run_sweep_command"]


def run_sweep_command(args: argparse.Namespace) -> int:
    """Check the grid, run it, write the table (and plot); print it. Exit status 0 when every
    job built, 1 when some failed (their rows say why), 2 for a bad grid."""
    from .. import json_output
    from ..flow.sweep import COLUMNS, grid, plot_sweep, run_sweep, write_table
    from ..paths import BUILD_ROOT

    try:
        jobs, rejected = grid(args.boards, args.sizes, args.clocks, args.seeds)
    except ValueError as e:
        print(f"onebit sweep: {e}", file=sys.stderr)
        return 2
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))
    try:
        for row in rejected:
            log(f"{row['board']} {row['shape']}: {row['error']}")
        rows = run_sweep(jobs, scheduler=args.scheduler, workers=args.workers,
                         progress=log) + rejected
    except OSError as e:               # a scheduler that does not answer
        print(f"onebit sweep: cannot reach the scheduler {args.scheduler}: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else BUILD_ROOT / "sweep" / "latest"
    js, cs = write_table(rows, out)
    if args.plot:
        plot_sweep(rows, args.plot)
    if args.json:
        print(json_output.dumps([{c: r.get(c) for c in COLUMNS} for r in rows]))
    else:
        print(f"{'board':<12}{'shape':>10}{'seed':>6}{'lanes':>7}{'LUT4':>8}{'FF':>7}{'BRAM':>6}{'DSP':>5}"
              f"{'Fmax':>8}{'target':>8}{'GOPS':>9}{'/kLUT4':>8}{'s':>7}")
        for r in rows:
            if r["error"]:
                print(f"{r['board']:<12}{r['shape']:>10}{'':>6}{r['lanes']:>7}  failed: "
                      f"{r['error']}")
                continue
            seed = "" if r["seed"] is None else r["seed"]
            print(f"{r['board']:<12}{r['shape']:>10}{seed:>6}{r['lanes']:>7}{r['lut4']:>8}"
                  f"{r['ff']:>7}"
                  f"{r['bram']:>6}{r['dsp']:>5}{r['fmax_mhz']:>8.1f}"
                  f"{r['clock_target_mhz']:>7.1f}{'' if r['meets_timing'] else '!'}"
                  f"{r['peak_gops']:>9.2f}"
                  f"{r['gops_per_1000_lut4']:>8.2f}{r['build_seconds'] or 0:>7.0f}")
        if not all(r["meets_timing"] for r in rows if not r["error"]):
            print("! Fmax below the clock target: the design misses timing there")
        print(f"table: {js}, {cs}" + (f"; plot: {args.plot}" if args.plot else ""))
    return 1 if any(r["error"] for r in rows) else 0
