"""The host package imports with NumPy alone, and the command line runs."""

import subprocess
import sys

from onebit.cli import main


def test_host_imports_without_amaranth_or_cocotb():
    code = ("import sys, onebit.host; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('amaranth', 'cocotb', 'cocotb_tools')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_demo_runs_and_agrees(capsys):
    assert main(["demo", "--tokens", "4"]) == 0
    assert "bit-exact" in capsys.readouterr().out


def test_bench_golden_json(capsys):
    assert main(["bench", "golden", "--json", "--repeats", "1"]) == 0
    assert '"prefill_s"' in capsys.readouterr().out


def test_bench_link_json(capsys):
    assert main(["bench", "link", "--json", "--frame-payload", "1000"]) == 0
    out = capsys.readouterr().out
    assert '"layer_weight_bytes": 98304' in out and '"token_bytes": 32' in out
