"""Boards the build flow knows: one module per board in ``constraints/`` (``onebit.constraints``).

Each module defines ``BOARD``, a :class:`Board`: the amaranth-boards platform (its pins and the
oscillator's clock constraint), the clock target (and PLL), the UART baud rate, the device's
default array and stores, and the part's resource totals. Adding a board means adding one file
there; ``boards()`` finds it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

from ..host.device_config import DeviceConfig

__all__ = ["Board", "boards", "board"]


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    platform: type                  # an amaranth-boards platform class
    family: str                     # "ice40" or "ecp5"
    clock_resource: str
    oscillator_hz: float
    target_hz: float                # the sync clock: the PLL's output, or the oscillator
    pll: str | None                 # "ice40", "ecp5" or None (run at the oscillator's frequency)
    baud: int
    device: DeviceConfig
    totals: dict[str, int] = field(default_factory=dict)   # the part's LUT, FF, BRAM, ...
    # nextpnr's placement seeds, tried in turn until one meets timing (empty: nextpnr's
    # default seed), and its router, for this board's whole design (``build``).
    seeds: tuple[int, ...] = ()
    router: str | None = None
    # nextpnr's heap placer: the weight of timing against wirelength and the exponent applied
    # to each path's criticality (None: nextpnr's defaults, 10 and 2), for the whole design.
    placer_timing_weight: int | None = None
    placer_crit_exp: int | None = None
    # openFPGALoader's name for the board (``-b``) and what its programmer can write:
    # ``("sram", "flash")`` or ``("flash",)`` (``onebit flash``).
    loader_board: str = ""
    loader_targets: tuple[str, ...] = ("sram", "flash")

    def clock_hz(self) -> float:
        """Frequency of the ``sync`` clock the design runs at."""
        if self.pll == "ice40":
            from ..hdl.board.clocking import ice40_pll

            return ice40_pll(self.oscillator_hz, self.target_hz).f_out
        if self.pll == "ecp5":
            from ..hdl.board.clocking import ecp5_pll

            return ecp5_pll(self.oscillator_hz, self.target_hz).f_out
        return self.oscillator_hz


def boards() -> dict[str, Board]:
    """Every board in ``constraints/``, by name."""
    from .. import constraints

    found = {}
    for info in pkgutil.iter_modules(constraints.__path__):
        mod = importlib.import_module(f"{constraints.__name__}.{info.name}")
        b = getattr(mod, "BOARD", None)
        if isinstance(b, Board):
            found[b.name] = b
    return found


def board(name: str) -> Board:
    """The board called ``name``; ``ValueError`` naming the known boards otherwise."""
    known = boards()
    if name not in known:
        raise ValueError(f"unknown board {name!r}; boards: {', '.join(sorted(known))}")
    return known[name]
