"""ULX3S with an ECP5 LFE5U-25F (CABGA381): amaranth-boards' ``ULX3S_25F_Platform``;
the clock is 150 MHz (25 MHz x 6). The 4 x 4 x 32 default meets it with most placement seeds
but not all (docs/build.md, "Placement seeds"), so the build tries seeds 1 to 6 in turn until
one does."""

from amaranth_boards.ulx3s import ULX3S_25F_Platform

from ._ulx3s import ulx3s_board

BOARD = ulx3s_board("25F", ULX3S_25F_Platform, {
    "LUT4": 24288, "FF": 24288, "BRAM": 56,
    "SPRAM": 0, "DSP": 28, "CARRY": 12144}, target_hz=150e6, seeds=(1, 2, 3, 4, 5, 6),
    placer_timing_weight=20, placer_crit_exp=4)
