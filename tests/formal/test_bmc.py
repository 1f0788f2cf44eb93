"""Bounded model checks (yowasp-sby + z3): each property holds, and each planted bug is found."""

import pytest

from onebit.sim.formal import (
    GemmStreamHarness,
    MultiThresholdHarness,
    PEHarness,
    PopcountHarness,
    run_bmc,
)

HARNESSES = {
    "popcount": (PopcountHarness, 1),
    "pe": (PEHarness, 12),
    # Two register stages, nine lanes: the tree is cut after its first level of adders.
    "pe_two_stages": (lambda **kw: PEHarness(lanes=9, stages=2, **kw), 12),
    "gemm_streams": (GemmStreamHarness, 24),
    # Counting beats per command makes the solver's work grow fast with depth; 12 steps cover
    # a whole small command and the start of the next.
    "gemm_beats": (lambda **kw: GemmStreamHarness(count_beats=True, **kw), 12),
    # The layer engine's multi-threshold unit and level packer (A up to 2).
    "multi_threshold": (MultiThresholdHarness, 14),
}


# The properties whose solver takes most of a minute or more run with -m slow (the GEMM streams'
# 24 steps, the beat count's and the multi-threshold unit's; their planted bugs are found in the
# default run).
SLOW = {"gemm_streams", "gemm_beats", "multi_threshold"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW
                                  else n for n in sorted(HARNESSES)])
def test_property_holds(name):
    make, depth = HARNESSES[name]
    ok, log = run_bmc(make(), name, depth=depth)
    assert ok, log[-3000:]


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_planted_bug_is_found(name):
    make, depth = HARNESSES[name]
    ok, log = run_bmc(make(mutant=True), f"{name}_mutant", depth=depth)
    assert not ok and "DONE (FAIL" in log, log[-3000:]
