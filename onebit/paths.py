"""Where generated output goes: one folder for Verilog, simulator builds, waveforms, formal runs,
bitstreams and reports (``build/`` at the project's root, ignored by git; ``ONEBIT_BUILD``
moves it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUILD_ROOT"]

#: Generated output goes below this folder.
BUILD_ROOT = Path(os.environ.get("ONEBIT_BUILD", Path(__file__).resolve().parent.parent / "build"))
