"""Synthesis smoke tests with YoWASP Yosys: the core maps onto iCE40 and ECP5 primitives."""

import pytest

from onebit.flow.synth import ff_count, lut4_count, synth_stats
from onebit.hdl.core.gemm import GemmCore
from onebit.hdl.core.pe import ProcessingElement
from onebit.host.core_config import CoreConfig

pytestmark = pytest.mark.synth


def test_weights_in_ice40_spram():
    cfg = CoreConfig(rows=2, cols=2, lanes=16, max_k=512, max_t=16, max_n=64,
                     weight_memory="ice40_spram")
    stats = synth_stats(GemmCore(cfg), "gemm", "ice40")
    assert stats.get("SB_SPRAM256KA") == cfg.spram_blocks == 4


@pytest.mark.parametrize("family, rams", [("ice40", ["SB_RAM40_4K"]),
                                          ("ecp5", ["DP16KD", "TRELLIS_DPR16X4"])])
def test_buffers_in_ram_not_flip_flops(family, rams):
    cfg = CoreConfig(rows=2, cols=2, lanes=32, max_k=1024, max_t=32, max_n=64)
    stats = synth_stats(GemmCore(cfg), "gemm", family)
    assert sum(stats.get(ram, 0) for ram in rams) >= cfg.rows
    buffer_bits = cfg.lanes * cfg.max_chunks * (cfg.act_depth // cfg.max_chunks * cfg.rows
                                                + 2 * cfg.cols)
    assert ff_count(stats) < buffer_bits // 8


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_pe_cost_is_bounded(family):
    """Regression bound on the PE's logic (measured figures are in docs/core.md)."""
    stats = synth_stats(ProcessingElement(lanes=32, acc_width=11), "pe", family)
    assert 0 < lut4_count(stats, family) / 32 < 4.2
    # The 11-bit accumulator, the registered count (the carry-save tree's two rows, at most
    # 6 bits each for 32 lanes) and its valid and last flags.
    assert 11 + 6 + 2 <= ff_count(stats) <= 11 + 2 * 6 + 2


@pytest.mark.parametrize("lanes, most", [(16, 2.8), (32, 2.55), (64, 2.5)])
def test_carry_chain_pe_on_ecp5(lanes, most):
    """The ECP5 element (count on carry chains, XOR folded in): CCU2C cells and two LUT4 for
    the accumulator's clear and enable, at most ``most`` LUT4 a lane (a CCU2C counts two)."""
    pe = ProcessingElement(lanes=lanes, acc_width=(32 * lanes).bit_length(), stages=2,
                           count="chains", primitives=True)
    stats = synth_stats(pe, "pe", "ecp5")
    assert stats["CCU2C"] > lanes // 2 and stats.get("LUT4", 0) <= 2
    assert lut4_count(stats, "ecp5") / lanes <= most


def test_count_tables_take_logic_off_the_ice40_element():
    # ``onebit bench core``'s figures: the element with the iCEBreaker's 4 tables takes fewer
    # LUT4 than the tree alone (2.00 against 2.94 a lane at max_k 1024).
    from onebit.bench.core import measure_logic

    ice40 = measure_logic(CoreConfig(rows=1, cols=1, lanes=32, max_k=1024))["ice40"]
    assert ice40["pe_tables"] == 4
    assert ice40["pe_lut4_per_lane"] == pytest.approx(94 / 32)
    assert ice40["pe_tables_lut4_per_lane"] == pytest.approx(64 / 32)
