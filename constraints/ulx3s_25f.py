"""ULX3S with an ECP5 LFE5U-25F (CABGA381): amaranth-boards' ``ULX3S_25F_Platform``;
the clock is 125 MHz (25 MHz x 5): the 4 x 4 x 32 default reaches about 145 MHz against it
(docs/build.md)."""

from amaranth_boards.ulx3s import ULX3S_25F_Platform

from ._ulx3s import ulx3s_board

BOARD = ulx3s_board("25F", ULX3S_25F_Platform, {
    "LUT4": 24288, "FF": 24288, "BRAM": 56,
    "SPRAM": 0, "DSP": 28, "CARRY": 12144}, target_hz=125e6)
