"""ULX3S with an ECP5 LFE5U-85F (CABGA381): amaranth-boards' ``ULX3S_85F_Platform``;
the clock is 62.5 MHz (25 MHz x 5 / 2): the larger die routes slower, 71 MHz for 4 x 4 x 32."""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ._ulx3s import ulx3s_board

BOARD = ulx3s_board("85F", ULX3S_85F_Platform, {
    "LUT4": 83640, "FF": 83640, "BRAM": 208,
    "SPRAM": 0, "DSP": 156, "CARRY": 41820}, target_hz=62.5e6)
