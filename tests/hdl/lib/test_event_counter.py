# amaranth: UnusedElaboratable=no
"""The event counter (``hdl/lib/event_counter.py``) of both kinds against its contract in Icarus
(the DSP kind through Yosys's SB_MAC16 model, across the carry between its halves), the kind
each platform gets, and the parameter checks."""

import pytest
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_25F_Platform

from onebit.hdl.core.gemm import GemmCore
from onebit.hdl.lib.event_counter import EventCounter, counter_kind
from onebit.host.core_config import CoreConfig
from onebit.sim.cocotb_runner import run_event_counter_tb


@pytest.mark.parametrize("kind, width", [("fabric", 32), ("ice40_dsp", 32), ("ice40_dsp", 20)])
def test_counts_like_its_contract(kind, width):
    assert run_event_counter_tb(kind=kind, width=width, seed=width) == 1


def test_kind_by_platform():
    assert counter_kind(ICEBreakerPlatform()) == "ice40_dsp"
    assert counter_kind(ULX3S_25F_Platform()) == "fabric"
    assert counter_kind(None) == "fabric"


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="kind must be one of fabric, ice40_dsp, not 'dsp'"):
        EventCounter(kind="dsp")
    with pytest.raises(ValueError, match="from 1 to 32 for kind 'ice40_dsp', not 33"):
        EventCounter(width=33, kind="ice40_dsp")
    with pytest.raises(ValueError, match="positive integer for kind 'fabric', not 0"):
        EventCounter(width=0)
    with pytest.raises(ValueError, match="counter_kind must be None or one of"):
        GemmCore(CoreConfig(rows=1, cols=1, lanes=8), counter_kind="lut")
