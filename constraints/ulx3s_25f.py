"""ULX3S with an ECP5 LFE5U-25F (CABGA381): amaranth-boards' ``ULX3S_25F_Platform``;
the clock is 150 MHz (25 MHz x 6). The default device is the shared ULX3S device with an
8 x 4 x 32 array (1,024 lanes). It meets the clock with most placement seeds but not all
(docs/build.md), so the build tries seeds 1 to 4 in turn until one does; nextpnr's heap
placer weighs timing harder than its defaults (timing weight 20, criticality exponent 4)."""

from dataclasses import replace

from amaranth_boards.ulx3s import ULX3S_25F_Platform

from ._ulx3s import ulx3s_board, ulx3s_device

_DEVICE = ulx3s_device()
BOARD = ulx3s_board("25F", ULX3S_25F_Platform, {
    "LUT4": 24288, "FF": 24288, "BRAM": 56,
    "SPRAM": 0, "DSP": 28, "CARRY": 12144}, target_hz=150e6, seeds=(1, 2, 3, 4),
    device=replace(_DEVICE, core=replace(_DEVICE.core, rows=8)),
    placer_timing_weight=20, placer_crit_exp=4)
