"""The FPGA family a component is elaborated for, from Amaranth's platform."""

from __future__ import annotations

__all__ = ["family"]


def family(platform) -> str:
    """``"ice40"``, ``"ecp5"``, ... of ``platform`` (lower case), or ``""`` for simulation and
    plain Verilog (no platform, or one without a family)."""
    return str(getattr(platform, "family", "")).lower()
