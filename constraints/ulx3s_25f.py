"""ULX3S with an ECP5 LFE5U-25F (CABGA381): 25 MHz oscillator on G2, FTDI UART
(amaranth-boards' ``ULX3S_25F_Platform``). The design runs at the oscillator's 25 MHz
(no PLL yet)."""

from amaranth_boards.ulx3s import ULX3S_25F_Platform

from ..boards import Board
from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig

BOARD = Board(
    name="ulx3s-25f",
    description="ULX3S (ECP5 LFE5U-25F)",
    platform=ULX3S_25F_Platform,
    family="ecp5",
    clock_resource="clk25",
    oscillator_hz=25e6,
    target_hz=25e6,
    pll=None,
    baud=1_000_000,
    device=DeviceConfig(core=CoreConfig(rows=4, cols=4, lanes=32, max_k=1024, max_t=64,
                                        max_n=1024),
                        frame_bytes=1024, act_words=2048, weight_words=8192,
                        thresh_words=1024, result_beats=512),
    totals={"LUT4": 24288, "FF": 24288, "BRAM": 56, "SPRAM": 0, "DSP": 28, "CARRY": 12144},
)
