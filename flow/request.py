"""What to build: a ``BuildRequest`` names the board and any change to its design and flow; its
``resolve`` checks everything against the board before any design is made."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..host.checks import check_count
from ..host.device_config import DeviceConfig
from .boards import Board, board

__all__ = ["BuildRequest", "Resolved", "ROUTERS", "nextpnr_options"]

#: nextpnr's routers (``--router``); the first is its default.
ROUTERS = ("router1", "router2")


def nextpnr_options(*, seed: int | None = None, router: str | None = None,
                    timing_weight: int | None = None, crit_exp: int | None = None) -> str:
    """nextpnr's options for a build: the JSON report, timing failures reported by us (not
    nextpnr), and the placement ``seed``, ``router`` and heap placer's ``timing_weight`` and
    ``crit_exp`` if given (checked here)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if router is not None and router not in ROUTERS:
        raise ValueError(f"router must be 'router1' or 'router2', not {router!r}")
    for name, v in (("timing_weight", timing_weight), ("crit_exp", crit_exp)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    opts = "--report report.json --timing-allow-fail"
    opts += f" --seed {seed}" if seed is not None else ""
    opts += f" --router {router}" if router is not None else ""
    opts += f" --placer-heap-timingweight {timing_weight}" if timing_weight is not None else ""
    return opts + (f" --placer-heap-critexp {crit_exp}" if crit_exp is not None else "")


@dataclass(frozen=True)
class BuildRequest:
    """One build of a board's design.

    Members
    -------
    board : str
        A board of ``constraints/`` (``onebit.flow.boards``).
    device : DeviceConfig or None
        Replaces the board's default device (array and stores).
    rows, cols, lanes : int or None
        Then change its array (``DeviceConfig.reshaped``: the stores keep what they hold).
    clock_mhz : float or None
        Replaces the clock target (boards with a PLL).
    seed, seeds : placement seeds (nextpnr's ``--seed``, non-negative integers); ``seeds`` are
        tried in turn, ``jobs`` builds at a time (default one per core), until one meets timing;
        ``seed`` is one seed alone. Default: the board's seeds (whole designs only).
    router : str or None
        ``"router1"`` (nextpnr's default) or ``"router2"``; default the board's.
    rebuild : bool
        Ignore a cached build of the same design.
    array_only : bool
        Build the compute array alone (``hdl/board/array_bench_top.py``) instead of the host
        link and accelerator, to measure the array's own cost and Fmax.
    require_timing : bool
        False returns the report of a design that misses timing instead of raising.
    """

    board: str
    device: DeviceConfig | None = None
    rows: int | None = None
    cols: int | None = None
    lanes: int | None = None
    clock_mhz: float | None = None
    seed: int | None = None
    seeds: Sequence[int] | None = None
    router: str | None = None
    jobs: int | None = None
    rebuild: bool = False
    array_only: bool = False
    require_timing: bool = True

    def resolve(self) -> Resolved:
        """The board with this request's changes, the seeds to try, the router and the jobs;
        ``ValueError``/``TypeError`` naming the problem, before any design is made."""
        b = board(self.board)
        seeds, router = self.seeds, self.router
        if self.seed is not None and seeds is not None:
            raise ValueError(f"give seed or seeds, not both (seed={self.seed!r}, "
                             f"seeds={seeds!r})")
        if self.seed is not None:
            seeds = (self.seed,)
        if seeds is not None:
            seeds = tuple(seeds)
            if not seeds:
                raise ValueError("seeds must hold at least one seed, not ()")
        elif not self.array_only:   # the board's own seeds and router are for its whole design
            seeds = b.seeds
        placer = {}
        if not self.array_only:
            router = b.router if router is None else router
            placer = {k: v for k, v in (("timing_weight", b.placer_timing_weight),
                                        ("crit_exp", b.placer_crit_exp)) if v is not None}
        tries: tuple[int | None, ...] = seeds or (None,)
        for s in tries:
            nextpnr_options(seed=s, router=router, **placer)
        jobs = min(len(tries), os.cpu_count() or 1) if self.jobs is None else self.jobs
        check_count("jobs", jobs)
        if self.clock_mhz is not None:
            if b.pll is None:
                raise ValueError(f"{b.name} has no PLL in its constraints; it runs at its "
                                 f"oscillator's {b.oscillator_hz / 1e6:g} MHz")
            if not isinstance(self.clock_mhz, (int, float)) or not self.clock_mhz > 0:
                raise ValueError(f"clock_mhz must be a positive number, not "
                                 f"{self.clock_mhz!r}")
            b = replace(b, target_hz=self.clock_mhz * 1e6)
        b.clock_hz()              # an impossible clock raises here
        if self.device is not None:
            if not isinstance(self.device, DeviceConfig):
                raise TypeError(f"device must be a DeviceConfig, not {self.device!r}")
            b = replace(b, device=self.device)
        if (self.rows, self.cols, self.lanes) != (None, None, None):
            b = replace(b, device=b.device.reshaped(rows=self.rows, cols=self.cols,
                                                    lanes=self.lanes))
        return Resolved(b, tries, router, jobs, placer)


@dataclass(frozen=True)
class Resolved:
    """A checked request: the board to build, the seeds to try, the router, the jobs and the
    heap placer's weights (``nextpnr_options``' ``timing_weight`` and ``crit_exp``, the
    board's for its whole design)."""

    board: Board
    tries: tuple[int | None, ...]
    router: str | None
    jobs: int
    placer: dict = field(default_factory=dict)
