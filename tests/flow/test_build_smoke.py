# amaranth: UnusedElaboratable=no
"""Synthesis smoke tests (marker ``synth``): a small configuration of the whole design, host link
and core, built into a bitstream for iCE40 and ECP5 with the pip-installed tools, its report
checked; a cached rebuild; the ASIC estimate of a small core."""

import time
from pathlib import Path

import pytest

from onebit.flow.asic import asic_estimate, format_asic
from onebit.flow.build import build
from onebit.flow.report import format_report
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig

pytestmark = [pytest.mark.synth, pytest.mark.slow]

SMALL = DeviceConfig(core=CoreConfig(rows=1, cols=2, lanes=8, max_k=256, max_t=8, max_n=64),
                     frame_bytes=64, act_words=64, weight_words=512, thresh_words=64,
                     result_beats=32)


# This test is about the flow, not the clock: one placement seed each, well below the boards'
# own clocks (whose builds try several seeds: docs/build.md), so that any placement meets it:
# 18 MHz on the iCE40 (a multiple of its 3 Mbaud; the board runs at 48), 125 MHz on the 25F.
@pytest.mark.parametrize("board, lut_total, clock_mhz", [("icebreaker", 5280, 18.0),
                                                         ("ulx3s-25f", 24288, 125.0)])
def test_small_design_builds_and_meets_timing(board, lut_total, clock_mhz):
    lines = []
    report = build(board, device=SMALL, clock_mhz=clock_mhz, out=lines.append, rebuild=True,
                   seed=1)
    lut = report["utilization"]["LUT4"]
    assert lut["available"] == lut_total and 0 < lut["used"] < lut_total
    assert {"LUT4", "FF", "CARRY", "BRAM", "DSP"} <= set(report["utilization"])
    assert all(0 < report["utilization"][r]["used"] for r in ("FF", "CARRY", "BRAM"))
    # Progress: every step and phase, once each, in order, while the tools ran.
    said = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("  [")]
    steps = ["synthesis (Yosys", "synthesis: mapping to LUTs", "place and route (nextpnr)",
             "place and route: placement", "place and route: routing", "bitstream (", "finished"]
    at = [next(i for i, s in enumerate(said) if s.startswith(step)) for step in steps]
    assert at == sorted(at), said
    (clock,) = report["fmax"].values()
    assert clock["achieved_mhz"] >= clock["constraint_mhz"]     # build() raises otherwise
    assert clock["constraint_mhz"] == pytest.approx(clock_mhz, rel=0.01)
    # The sync clock's constraint is derived from the PLL's settings; none is ignored.
    pnr = (Path(report["bitstream"]).parent / "build.log").read_text()
    assert f"Derived frequency constraint of {report['clock_mhz']:.1f} MHz" in pnr
    assert "ignoring clock constraint" not in pnr
    assert report["peak_gops"] == pytest.approx(2 * 16 * report["clock_mhz"] / 1e3)
    assert Path(report["bitstream"]).stat().st_size > 10_000
    assert Path(report["bitstream"]).with_name("onebit-report.json").exists()
    assert "binary GOPS" in lines[-1] and lines[-1] == format_report(report)
    folder = Path(report["bitstream"]).parent
    # The state machines are recoded one-hot (both families).
    rpt = (folder / "top.rpt").read_text()
    assert "Recoding FSM `$fsm$\\link.proc.fsm_state" in rpt
    assert "mapping auto encoding to `one-hot`" in rpt
    if board.startswith("ulx3s"):
        # ECP5: the registers behind every block RAM read are packed into the blocks
        # (onebit.flow.ecp5_outreg, in the build's log).
        log = (folder / "build.log").read_text()
        assert "flip-flops packed into the output registers" in log
        assert "; 0 read ports left as they are" in log
    start = time.monotonic()                                     # unchanged: cached
    assert build(board, device=SMALL, clock_mhz=clock_mhz, out=lambda *_: None, seed=1) == report
    assert time.monotonic() - start < 30


def test_clock_option_is_checked():
    with pytest.raises(ValueError, match="no ECP5 PLL setting makes 1000 MHz from 25 MHz"):
        build("ulx3s-25f", clock_mhz=1000, out=lambda *_: None)
    with pytest.raises(ValueError, match="clock_mhz must be a positive number, not -5"):
        build("icebreaker", clock_mhz=-5, out=lambda *_: None)


def test_array_bench_checks_its_arguments():
    from onebit.bench.array import run
    from onebit.flow.boards import board as get_board
    from onebit.hdl.board.array_bench_top import ArrayBenchTop

    with pytest.raises(ValueError, match="no array sizes for board 'nope'"):
        run(json_out=True, boards=["nope"])
    with pytest.raises(TypeError, match="core must be a CoreConfig, not 4"):
        ArrayBenchTop(get_board("icebreaker"), 4)


def test_asic_estimate_of_a_small_core():
    cfg = CoreConfig(rows=1, cols=2, lanes=8, max_k=64, max_t=4, max_n=8)
    r = asic_estimate(cfg, out=lambda *_: None)
    assert r["transistors"] > 1000 and r["memories"] > 0
    assert r["memory_bits"] > 0 and set(r["cells_by_type"]) >= {"$_NAND_", "$_DFF_P_"}
    assert "logic transistors" in format_asic(r)


# The array alone (``onebit bench array``): a 2 x 2 x 32 array (two-stage elements) placed and
# routed at the ECP5 target and a 2 x 2 x 8 one on the UP5K at 48 MHz; both meet their clock.
@pytest.mark.parametrize("board, rows, cols, lanes, clock_mhz", [
    ("icebreaker", 2, 2, 8, 48.0), ("ulx3s-25f", 2, 2, 32, 150.0)])
def test_array_alone_builds_and_meets_its_target(board, rows, cols, lanes, clock_mhz):
    from onebit.bench.array import _row
    from onebit.flow.boards import board as get_board
    from onebit.flow.synth import lut4_count, synth_stats
    from onebit.hdl.core.array import ComputeArray

    b = get_board(board)
    report = build(board, rows=rows, cols=cols, lanes=lanes, clock_mhz=clock_mhz,
                   array_only=True, out=lambda *_: None)          # raises if timing is missed
    assert report["design"] == "array only"
    assert report["array"] == {"rows": rows, "cols": cols, "lanes": lanes}
    # Nothing of the array was pruned: the placed design holds at least the array's logic.
    core = b.device.core.reshaped(rows=rows, cols=cols, lanes=lanes)
    array = ComputeArray(core, family=b.family)
    array_lut4 = lut4_count(synth_stats(array, "array", b.family), b.family)
    assert report["utilization"]["LUT4"]["used"] >= array_lut4 > rows * cols * lanes
    assert report["utilization"]["BRAM"]["used"] == 0
    row = _row(board, rows, cols, lanes, out=lambda *_: None)   # the bench's row: cached now
    assert row["fmax_mhz"] >= clock_mhz and row["array_lut4"] == array_lut4
    assert row["gops_per_1000_lut4"] == pytest.approx(
        2 * rows * cols * lanes * row["fmax_mhz"] / array_lut4, rel=1e-2)
