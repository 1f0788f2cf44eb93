"""Placement seeds tried in turn until one meets timing (``onebit build --seeds``).

nextpnr's placement is seeded, and on a design that sits near its clock target the seed alone
moves Fmax by several MHz (the ULX3S-25F's whole design: about +-5 MHz at 150 MHz,
``docs/build.md``). :func:`sweep` builds the design with each seed of a list, ``jobs`` at a time
and in the list's order, and stops after the first batch in which a seed met every clock; a
seed whose placement nextpnr cannot legalise (:class:`PlacementError`) counts as a miss. Any
other failure (the design does not fit, a tool broke) does not depend on the seed and ends the
sweep. :func:`choose` then takes the first seed in the list that met timing, or, if none did,
the fastest: the result does not depend on ``jobs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..host.checks import check_count

__all__ = ["Attempt", "PlacementError", "meets", "sweep", "choose", "describe"]


class PlacementError(RuntimeError):
    """nextpnr found no legal placement with this seed (another seed may place)."""


@dataclass(frozen=True)
class Attempt:
    """One seed's build: its report, or the placement failure's message."""

    seed: int | None
    report: dict | None = None
    error: str | None = None

    @property
    def fmax_mhz(self) -> float:
        """The slowest clock's Fmax (0 for a failed placement)."""
        if self.report is None:
            return 0.0
        return min((f["achieved_mhz"] for f in self.report["fmax"].values()), default=0.0)


def meets(report: dict) -> bool:
    """Every clock of ``report`` reaches its target."""
    return all(f["achieved_mhz"] >= f["constraint_mhz"] for f in report["fmax"].values())


def sweep(seeds: Sequence[int | None], run: Callable[[int | None], dict], *,
          jobs: int = 1) -> list[Attempt]:
    """Build with ``seeds`` in order, ``jobs`` at a time (``run(seed)`` returns the report or
    raises); stop after the first batch in which one met timing. The attempts made, in order."""
    check_count("jobs", jobs)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")

    def attempt(seed: int | None) -> Attempt:
        try:
            return Attempt(seed, report=run(seed))
        except PlacementError as e:
            return Attempt(seed, error=str(e))

    attempts: list[Attempt] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for at in range(0, len(seeds), jobs):
            attempts += pool.map(attempt, seeds[at:at + jobs])
            if any(a.report is not None and meets(a.report) for a in attempts):
                break
    return attempts


def choose(attempts: Sequence[Attempt]) -> Attempt | None:
    """The first attempt that met timing, else the fastest placed one, else None."""
    placed = [a for a in attempts if a.report is not None]
    met = [a for a in placed if meets(a.report)]
    if met:
        return met[0]
    return max(placed, key=lambda a: a.fmax_mhz, default=None)


def describe(attempts: Sequence[Attempt]) -> str:
    """``"seed 1 148.7 MHz, seed 2 153.5 MHz, seed 3 no legal placement"``."""
    def one(a: Attempt) -> str:
        name = "default seed" if a.seed is None else f"seed {a.seed}"
        return f"{name} {a.fmax_mhz:.1f} MHz" if a.report is not None else \
            f"{name} no legal placement"
    return ", ".join(one(a) for a in attempts)
