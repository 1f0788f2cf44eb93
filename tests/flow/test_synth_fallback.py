"""Synthesis fallbacks: after Yosys fails an internal assertion in its LUT mapping, the build
script synthesises again with the next script (``onebit.flow.synth_fallback``); any other
error still ends the build."""

import json
import os
import stat
import subprocess

import pytest

from onebit.flow.build import build
from onebit.flow.cache import tool_env, write_files
from onebit.flow.synth_fallback import FALLBACK_MAPPERS, USED_FILE, _nest


class _Stop(Exception):
    pass


def _plan(monkeypatch, name: str, lanes: int) -> dict:
    """The files ``build`` would run for a one-element array on board ``name`` (no tool runs)."""
    import onebit.flow.build as build_module

    seen = []

    def stop(files, family):
        seen.append(files)
        raise _Stop

    monkeypatch.setattr(build_module, "design_hash", stop)
    with pytest.raises(_Stop):
        build(name, rows=1, cols=1, lanes=lanes, out=lambda *_: None)
    return seen[0]


def test_fallback_scripts_replace_only_the_lut_mapping(monkeypatch):
    ecp5 = _plan(monkeypatch, "ulx3s-25f", 16)
    steps = ["read_rtlil top.il", "synth_ecp5 -top top -run :map_luts",
             "techmap -map +/lattice/latches_map.v", "abc -lut 4:7 -dress",
             "synth_ecp5 -top top -run map_cells:", "write_json top.json"]
    at = [ecp5["top.alt1.ys"].index(step) for step in steps]
    assert at == sorted(at)
    assert "abc9" not in ecp5["top.alt1.ys"] and "top.alt2.ys" not in ecp5
    script = ecp5["build_top.sh"]
    tries = [script.index(f'"$YOSYS" -q -l top.rpt {n}') for n in ("top.ys", "top.alt1.ys")]
    assert tries == sorted(tries) and script.index("$NEXTPNR_ECP5") > tries[-1]

    ice40 = _plan(monkeypatch, "icebreaker", 8)
    assert "abc9 -W 1500" in ice40["top.ys"]
    assert "abc9 -W" not in ice40["top.alt1.ys"] and "abc -lut 4 -dress" in ice40["top.alt1.ys"]
    assert FALLBACK_MAPPERS == {"ecp5": ("abc -lut 4:7 -dress",),
                                "ice40": ("abc -lut 4 -dress",)}


def _fake_yosys(tmp_path, failures: dict[str, str]):
    """A stand-in for Yosys that writes its log and fails on the scripts in ``failures`` with
    the given error line (the real one's assertion cannot be made on demand)."""
    for name, line in failures.items():
        (tmp_path / f"fails.{name}").write_text(line + "\n")
    tool = tmp_path / "yosys"
    tool.write_text('#!/bin/sh\nlog="$3"; script="$4"\necho "$script" >> tried\n'
                    'if [ -f "fails.$script" ]; then cp "fails.$script" "$log"; exit 1; fi\n'
                    'echo ok > "$log"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool


ASSERT = "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in rtlil.cc:3091."


@pytest.mark.parametrize("failures, code, used, tried", [
    ({}, 0, "top.ys", ["top.ys"]),
    ({"top.ys": ASSERT}, 0, "top.alt1.ys", ["top.ys", "top.alt1.ys"]),
    ({"top.ys": ASSERT, "top.alt1.ys": ASSERT}, 0, "top.alt2.ys",
     ["top.ys", "top.alt1.ys", "top.alt2.ys"]),
    ({"top.ys": ASSERT, "top.alt1.ys": ASSERT, "top.alt2.ys": ASSERT}, 1, None,
     ["top.ys", "top.alt1.ys", "top.alt2.ys"]),
    ({"top.ys": "ERROR: Module `top' not found!"}, 1, None, ["top.ys"]),   # not a Yosys bug
    ({"top.ys": ASSERT, "top.alt1.ys": "ERROR: syntax error"}, 1, None,
     ["top.ys", "top.alt1.ys"]),
])
def test_the_script_falls_back_only_after_an_assertion(tmp_path, failures, code, used, tried):
    tool = _fake_yosys(tmp_path, failures)
    script = tmp_path / "synth.sh"
    script.write_text("set -e\n" + _nest(["top.ys", "top.alt1.ys", "top.alt2.ys"]) +
                      "echo placed > placed\n")
    result = subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "YOSYS": str(tool)})
    assert result.returncode == code
    assert (tmp_path / "tried").read_text().split() == tried
    assert (tmp_path / "placed").exists() == (code == 0)
    if used:
        assert (tmp_path / USED_FILE).read_text().strip() == used
        for n in range(len(tried) - 1):          # each failed attempt's log is kept
            assert (tmp_path / f"top.{n}.rpt").read_text().startswith("ERROR: Assert")
        if len(tried) > 1:
            assert "Yosys failed an internal assertion with top.ys" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("board, lanes, family, lut", [("ulx3s-25f", 16, "ecp5", "LUT4"),
                                                      ("icebreaker", 8, "ice40", "SB_LUT4")])
def test_the_fallback_script_synthesises_with_the_real_yosys(monkeypatch, tmp_path, board,
                                                               lanes, family, lut):
    files = _plan(monkeypatch, board, lanes)
    write_files(tmp_path, files)
    env = {**os.environ, **tool_env(family)}
    yosys = [env["YOSYS"]]
    for n in (1,):
        ys = tmp_path / f"top.alt{n}.ys"
        ys.write_text(ys.read_text().replace("write_json top.json", f"write_json alt{n}.json"))
        subprocess.run(yosys + ["-q", "-l", f"alt{n}.rpt", ys.name], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
        netlist = json.loads((tmp_path / f"alt{n}.json").read_text())
        cells = [c["type"] for m in netlist["modules"].values() for c in m["cells"].values()]
        assert cells.count(lut) > 50, (n, cells.count(lut))
