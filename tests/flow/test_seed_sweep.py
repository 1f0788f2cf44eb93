"""Placement seed sweeps: the order and batches of the builds, which seed is chosen, and a real
sweep of a small iCE40 design (marker ``synth``)."""

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from test_build_smoke import SMALL

from onebit.flow.build import BuildError, build
from onebit.flow.seed_sweep import PlacementError, choose, describe, meets, sweep


def _report(fmax: float, target: float = 150.0) -> dict:
    return {"fmax": {"clk": {"achieved_mhz": fmax, "constraint_mhz": target}}}


FMAX = {1: 148.7, 2: 153.5, 3: 156.0, 4: 142.3, 5: 151.0}


def _runner(fmax: dict, unplaced=()):
    ran, lock = [], threading.Lock()

    def run(seed):
        with lock:
            ran.append(seed)
        if seed in unplaced:
            raise PlacementError(f"seed {seed}: Unable to find legal placement")
        return _report(fmax[seed])
    return run, ran


@pytest.mark.parametrize("jobs, built", [(1, [1, 2]), (2, [1, 2]), (3, [1, 2, 3])])
def test_sweep_stops_after_the_batch_that_met_and_chooses_the_first_in_order(jobs, built):
    run, ran = _runner(FMAX)
    attempts = sweep((1, 2, 3, 4, 5), run, jobs=jobs)
    assert sorted(ran) == built and [a.seed for a in attempts] == built
    assert choose(attempts).seed == 2           # the same whatever the batch size
    assert describe(attempts[:2]) == "seed 1 148.7 MHz, seed 2 153.5 MHz"


def test_no_seed_meets_so_the_fastest_is_chosen_and_placement_failures_are_misses():
    run, ran = _runner(FMAX, unplaced={3})
    attempts = sweep((4, 3, 1), run, jobs=2)
    assert ran and sorted(ran) == [1, 3, 4]     # every seed tried: none met
    assert [a.seed for a in attempts] == [4, 3, 1] and attempts[1].error
    assert choose(attempts).seed == 1 and not meets(choose(attempts).report)
    assert describe(attempts) == "seed 4 142.3 MHz, seed 3 no legal placement, seed 1 148.7 MHz"
    run, _ = _runner(FMAX, unplaced={1, 2})
    assert choose(sweep((1, 2), run)) is None


def test_other_failures_end_the_sweep():
    def run(seed):
        raise BuildError("the design does not fit: ICESTORM_LC 5509 used of 5280")

    with pytest.raises(BuildError, match="does not fit"):
        sweep((1, 2, 3), run, jobs=2)
    for jobs in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match=f"jobs must be a positive integer, not {jobs!r}"):
            sweep((1,), run, jobs=jobs)


@pytest.mark.synth
@pytest.mark.slow
def test_a_real_sweep_on_ice40():
    # 18 MHz: the small design meets it with any seed, so the first seed's build is the one.
    lines = []
    r = build("icebreaker", device=SMALL, clock_mhz=18.0, seeds=(5, 6), jobs=1,
              out=lines.append)
    assert r["placement"]["seed"] == 5 and [t["seed"] for t in r["placement"]["tried"]] == [5]
    assert "placement seed 5 (tried 5: " in lines[-1]
    # 60 MHz: no seed does (the small design reaches 34-39 MHz); both built at once, the
    # error names each seed's Fmax, and without require_timing the fastest comes back.
    small = replace(SMALL, frame_bytes=32)      # (another design: not the cached one above)
    with pytest.raises(BuildError) as e:
        build("icebreaker", device=small, clock_mhz=60.0, seeds=(5, 6), jobs=2,
              out=lambda *_: None)
    assert "misses timing with every seed tried (seed 5 " in str(e.value)
    assert ", seed 6 " in str(e.value) and "< target 60.0 MHz" in str(e.value)
    r = build("icebreaker", device=small, clock_mhz=60.0, seeds=(5, 6),
              require_timing=False, out=lambda *_: None)           # cached: no tool runs
    tried = r["placement"]["tried"]
    assert r["placement"]["seed"] == max(tried, key=lambda t: t["fmax_mhz"])["seed"]
    assert Path(r["bitstream"]).exists()
