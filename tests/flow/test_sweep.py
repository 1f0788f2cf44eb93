"""``onebit sweep`` on a real Dask scheduler: the results table (JSON and CSV), the cache (a
repeated sweep runs no job), failed jobs as rows with their error while the sweep goes on, the
progress lines and the plot (a valid PNG of the expected size). The default run uses a fast
job function on an in-process ``LocalCluster``; with ``-m slow`` a two-worker cluster builds
small iCE40 and ECP5 designs for real."""

import csv
import json
import struct
import threading
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from onebit.cli.main import main  # noqa: E402
from onebit.flow.sweep import COLUMNS, SweepJob, _row, grid, plot_sweep, run_sweep, write_table  # noqa: E402, I001

CALLS = []
LOCK = threading.Lock()


def fake_build(job: SweepJob) -> dict:
    """A fast stand-in for a build, deterministic in the job: a shape with 3 rows fails."""
    with LOCK:
        CALLS.append(job.label)
    if job.rows == 3:
        return {"row": _row(job, error="the design does not fit (fake)"), "cacheable": True}
    lanes = job.rows * job.cols * job.lanes
    fmax = 200.0 - lanes / 10
    report = {"utilization": {"LUT4": {"used": 1000 + 3 * lanes, "available": 5280},
                              "FF": {"used": 500, "available": 5280},
                              "BRAM": {"used": 4, "available": 30}},
              "fmax": {"sync": {"achieved_mhz": fmax, "constraint_mhz": 48.0}},
              "clock_mhz": 48.0, "peak_gops": 2 * lanes * 48.0 / 1e3,
              "gops_per_1000_lut4": 2 * lanes * 48.0 / (1000 + 3 * lanes),
              "build_seconds": 1.0, "placement": {"seed": job.seed}}
    return {"row": _row(job, report), "report": report, "cacheable": True,
            "bitstream": b"bits" + job.label.encode(), "suffix": ".bin"}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def test_table_cache_and_failures(client, tmp_path):
    jobs, rejected = grid(["icebreaker", "ulx3s-25f"], ["1x1x16", "3x1x16", "2x2x16"],
                          seeds=[1, 2])
    assert len(jobs) == 12 and rejected == []
    lines = []
    CALLS.clear()
    rows = run_sweep(jobs, client=client, job_fn=fake_build, cache_dir=tmp_path / "cache",
                     progress=lines.append)
    assert len(CALLS) == 12 and len(rows) == 12
    assert [(r["board"], r["shape"], r["seed"]) for r in rows] == \
        [(j.board, j.shape, j.seed) for j in jobs]
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 4 and all(r["shape"] == "3x1x16" for r in failed)
    ok = [r for r in rows if not r["error"]]
    assert all(r["lut4"] == 1000 + 3 * r["lanes"] and r["bram"] == 4 for r in ok)
    assert all(Path(r["bitstream"]).read_bytes().startswith(b"bits") for r in ok)
    assert lines[0] == "sweep: 12 jobs, 0 from the cache, 12 to build"
    assert lines[-1].startswith("[12/12]") and "failed 4" in lines[-1]
    assert any("min left" in ln for ln in lines[1:-1])
    # The same sweep again: every row from the cache, no job runs.
    CALLS.clear()
    lines.clear()
    again = run_sweep(jobs, client=client, job_fn=fake_build, cache_dir=tmp_path / "cache",
                      progress=lines.append)
    assert CALLS == [] and again == rows
    assert lines == ["sweep: 12 jobs, 12 from the cache, 0 to build"]
    js, cs = write_table(rows, tmp_path / "out")
    table = json.loads(js.read_text())
    assert [list(r) for r in table] == [list(COLUMNS)] * 12
    with cs.open() as fh:
        got = list(csv.DictReader(fh))
    assert [r["error"] for r in got] == [r["error"] or "" for r in rows]
    assert got[0]["lut4"] == str(rows[0]["lut4"])


def test_a_job_that_raises_is_a_row(client, tmp_path):
    def broken(job):
        raise RuntimeError("worker lost its disk")

    rows = run_sweep(grid(["icebreaker"], ["1x1x16"])[0], client=client, job_fn=broken,
                     cache_dir=tmp_path, progress=lambda s: None)
    assert rows[0]["error"] == "RuntimeError: worker lost its disk"
    assert not list(tmp_path.glob("*.json"))          # not cached: it may work next time


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_is_a_png_of_the_expected_size(client, tmp_path):
    jobs, rejected = grid(["icebreaker", "ulx3s-25f", "ulx3s-85f"],
                          ["1x1x16", "2x1x16", "2x2x32", "4x4x32", "4x8x32"])
    # At 16 lanes the 85F's engine needs more activation words than its store has; its
    # parameter and residual stores grow for fewer columns (the iCEBreaker's SPRAM weight
    # store takes 16 or 32 lanes: every shape here is a valid device, fitting or not).
    assert {(r["board"], r["shape"]) for r in rejected} == {
        ("ulx3s-85f", s) for s in ("1x1x16", "2x1x16")}
    assert all(r["error"].startswith("not built: ") for r in rejected)
    rows = run_sweep(jobs, client=client, job_fn=fake_build, cache_dir=tmp_path,
                     progress=lambda s: None) + rejected
    assert _png_size(plot_sweep(rows, tmp_path / "sweep.png")) == (1200, 500)


@pytest.mark.parametrize("argv,message", [
    (["--boards", "icebreaker,nosuch", "--sizes", "1x1x16"], "unknown board 'nosuch'"),
    (["--boards", "icebreaker", "--sizes", "1x1"], "ROWSxCOLSxLANES"),
    (["--boards", "icebreaker", "--sizes", "0x1x16"], "ROWSxCOLSxLANES"),
    (["--boards", "icebreaker", "--sizes", "1x1x16", "--clocks", "0.5"], "1..1000 MHz"),
])
def test_a_bad_grid_is_refused_before_any_job(argv, message, capsys):
    try:
        status = main(["sweep", *argv])
    except SystemExit as e:                  # (argparse's own refusals)
        status = e.code
    assert status == 2
    assert message in capsys.readouterr().err


def test_combinations_a_board_cannot_build_are_rows(client, tmp_path, capsys, monkeypatch):
    """An impossible shape on one board is a row of the table, and the sweep goes on."""
    import onebit.flow.sweep as sweep

    real = sweep.run_sweep
    monkeypatch.setattr(sweep, "run_sweep", lambda jobs, **kw: real(
        jobs, client=client, job_fn=fake_build, cache_dir=tmp_path / "c", progress=kw["progress"]))
    status = main(["sweep", "--boards", "icebreaker,ulx3s-85f", "--sizes", "2x1x16",
                   "--out", str(tmp_path), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert status == 1
    assert [(r["board"], r["error"] is None) for r in rows] == [("icebreaker", True),
                                                                ("ulx3s-85f", False)]
    assert "The layer engine needs" in rows[1]["error"]


@pytest.mark.slow
@pytest.mark.synth
def test_real_builds_on_a_two_worker_cluster(tmp_path, capsys):
    """Small iCE40 and ECP5 designs built by two worker processes; the plot of the results."""
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        status = main(["sweep", "--boards", "icebreaker,ulx3s-25f", "--sizes", "1x1x16",
                       "--seeds", "1", "--scheduler", cluster.scheduler_address, "--out",
                       str(out), "--plot", str(tmp_path / "p.png"), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert status == 0, rows
    assert {r["board"] for r in rows} == {"icebreaker", "ulx3s-25f"}
    assert all(r["lut4"] > 0 and r["fmax_mhz"] > 0 and r["error"] is None for r in rows)
    assert _png_size(tmp_path / "p.png") == (1200, 500)
    assert (out / "results.csv").exists()
