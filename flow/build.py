"""``onebit build --board NAME``: the full design (host link + accelerator) to a bitstream.

``build(BuildRequest(...))`` elaborates the design for the board's platform, tries the placement
seeds (``seed_sweep``), each build in its own cached folder ``build/boards/<board>-<hash>``
(``cache``) running Amaranth's script with the netlist passes (``passes``) while following the
tools' logs (``steps``, ``logs``), and returns the report (``report``): resources against the
part's totals, Fmax against the clock's target, peak binary GOPS; it is printed (``--json`` for
machines) and saved as ``onebit-report.json`` beside the bitstream. A design that does not fit
or misses timing fails with a message naming the resource or the clock.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .boards import Board
from .cache import design_hash, tool_env, write_files
from .logs import failure, no_placement, over_capacity, synth_cells, synth_errors
from .no_rw_check import apply_no_rw_check
from .passes import ONE_HOT_FSMS, add_netlist_passes, ice40_synth_overrides
from .report import format_report, parse_report, summarise
from .request import ROUTERS, BuildRequest, nextpnr_options
from .seed_sweep import PlacementError, choose, describe, sweep
from .steps import run_build_script
from .synth_fallback import USED_FILE, with_synth_fallbacks

__all__ = ["build", "BuildRequest", "BuildError", "ROUTERS", "nextpnr_options"]


class BuildError(RuntimeError):
    """The design does not fit, misses timing, or a tool failed (the message says which)."""


def build(request: BuildRequest | str, *, out=print, json_out: bool = False,
          **fields) -> dict:
    """Build the design a :class:`~.request.BuildRequest` asks for (or a board's name with the
    request's fields as keywords); return the report, or raise :class:`BuildError`.

    Each seed's build is cached on its own (``onebit.flow.cache``); the report's ``placement``
    says which seed it is and what every seed tried reached. Progress lines of the tools' steps
    go to ``out`` while the build runs (with ``json_out`` to standard error, and the report to
    ``out`` as one JSON object).
    """
    from ..hdl.board.array_bench_top import ArrayBenchTop
    from ..hdl.board.top import BoardTop

    if isinstance(request, str):
        request = BuildRequest(request, **fields)
    elif fields:
        raise TypeError(f"give a BuildRequest or a board's name with fields, not both "
                        f"({sorted(fields)})")
    if not isinstance(request, BuildRequest):
        raise TypeError(f"request must be a BuildRequest or a board's name, not {request!r}")
    r = request.resolve()
    b, tries, router, jobs = r.board, r.tries, r.router, r.jobs
    array_only, rebuild = request.array_only, request.rebuild
    platform = b.platform()
    top = ArrayBenchTop(b, b.device.core) if array_only else BoardTop(b)
    opts = nextpnr_options(router=router, **r.placer)
    overrides = ice40_synth_overrides() if b.family == "ice40" else {}
    plan = platform.prepare(top, name="top", nextpnr_opts=opts, script_after_read=ONE_HOT_FSMS,
                            **overrides)
    plan.files["top.il"], _ = apply_no_rw_check(plan.files["top.il"])
    # Progress goes to ``out``; with ``json_out`` to standard error, so that standard output
    # stays one JSON object.
    progress = out if not json_out else (lambda s: print(s, file=sys.stderr, flush=True))

    def run(s: int | None) -> dict:
        seeded = nextpnr_options(seed=s, router=router, **r.placer)
        files = {n: c.replace(opts, seeded) if n.startswith("build_top.") else c
                 for n, c in plan.files.items()}
        said = progress if len(tries) == 1 else (lambda line: progress(f"seed {s}: {line}"))
        report = _place(b, files, array_only=array_only, rebuild=rebuild,
                        progress=said)
        return {**report, "seed": s}

    attempts = sweep(tries, run, jobs=jobs)
    chosen = choose(attempts)
    if chosen is None:       # (every seed's placement failed; the last one's message)
        tried = f"\n(seeds tried: {describe(attempts)})" if len(attempts) > 1 else ""
        raise BuildError(attempts[-1].error + tried)
    report = {**chosen.report, "placement": {
        "seed": chosen.seed, "tried": [{"seed": a.seed, "fmax_mhz": round(a.fmax_mhz, 2),
                                        "placed": a.report is not None} for a in attempts]}}
    if json_out:
        out(json.dumps(report))
    else:
        out(format_report(report))
    missed = [c for c, f in report["fmax"].items() if f["achieved_mhz"] < f["constraint_mhz"]]
    if missed and request.require_timing:
        c = missed[0]
        tried = f" with every seed tried ({describe(attempts)})" if len(attempts) > 1 else ""
        raise BuildError(f"clock {c} misses timing{tried}: Fmax "
                         f"{report['fmax'][c]['achieved_mhz']:.1f} MHz < target "
                         f"{report['fmax'][c]['constraint_mhz']:.1f} MHz")
    return report


def _place(b: Board, files: dict, *, array_only: bool, rebuild: bool,
           progress) -> dict:
    """One build of ``files`` (synthesis, place and route, packing) in its own folder under
    the files' hash, or its cached report; raise :class:`BuildError`
    (:class:`~.seed_sweep.PlacementError` where only the placement failed)."""
    from ..paths import BUILD_ROOT

    files = with_synth_fallbacks(files, b.family)
    digest = design_hash(files, b.family)
    folder = BUILD_ROOT / "boards" / f"{b.name}{'-array' if array_only else ''}-{digest}"
    report_path = folder / "onebit-report.json"
    if rebuild:
        report_path.unlink(missing_ok=True)
    if report_path.exists():
        return json.loads(report_path.read_text())
    progress(f"building {b.description} in {folder}: synthesis, place and route and "
             f"packing (minutes)")
    env = {**os.environ, **tool_env(b.family), "PYTHON": sys.executable}
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("top.rpt", "top.tim", "report.json", USED_FILE,
                  *(p.name for p in folder.glob("top.[0-9]*.rpt"))):
        (folder / stale).unlink(missing_ok=True)
    write_files(folder, files)
    add_netlist_passes(folder / "build_top.sh", b.family)
    returncode, log = run_build_script("build_top.sh", folder, env, progress)
    tim, rpt = folder / "top.tim", folder / "top.rpt"
    if tim.exists():
        log += tim.read_text(errors="replace")
    if returncode and rpt.exists():
        log += synth_errors(rpt.read_text(errors="replace"))
    (folder / "build.log").write_text(log)
    if returncode:
        message = failure(log, b, returncode) + f"\n(full log: {folder / 'build.log'})"
        raise (PlacementError if no_placement(log) and not over_capacity(log)
               else BuildError)(message)
    cells = synth_cells((folder / "top.rpt").read_text(errors="replace"))
    parsed = parse_report(json.loads((folder / "report.json").read_text()), b.family,
                          cells=cells, totals=b.totals)
    report = summarise(b, parsed, time.monotonic() - start, folder)
    report["design"] = "array only" if array_only else "host link and accelerator"
    used = folder / USED_FILE
    report["synthesis"] = used.read_text().strip() if used.exists() else "top.ys"
    report_path.write_text(json.dumps(report, indent=1))
    return report


