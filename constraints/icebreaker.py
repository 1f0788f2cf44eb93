"""iCEBreaker: iCE40UP5K-SG48, 12 MHz oscillator on pin 35, FTDI UART on pins 6 (rx), 9 (tx).

Pins come from amaranth-boards' ``ICEBreakerPlatform``; the design runs at 48 MHz from the SB_PLL40
(12 MHz x 64 / 16). Near that target the placement seed moves Fmax by a few MHz, so the build
tries seeds 2, 8, 3 and 5 in turn until one meets the clock (``--seed`` and ``--seeds``
override; ``docs/build.md`` gives each seed's Fmax). The array, 2 x 1 x 32 (64 lanes), fills the
logic cells left beside the host link and controller: 20 of each element's 32 lanes are counted
by four block RAM tables (``count_tables``; the 30 EBR are then all in use), the core's
counters take five of the eight DSP blocks. The weight store is all four SPRAM blocks, two wide
and two deep (32768 words of 32 bits = 1 Mbit: the reference layer's D=256, H=4, F=1024
weights, 786 Kbit, stay resident).
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from ..flow.boards import Board
from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig

BOARD = Board(
    name="icebreaker",
    description="iCEBreaker (iCE40UP5K-SG48)",
    platform=ICEBreakerPlatform,
    family="ice40",
    clock_resource="clk12",
    oscillator_hz=12e6,
    target_hz=48e6,
    pll="ice40",
    baud=3_000_000,
    device=DeviceConfig(core=CoreConfig(rows=2, cols=1, lanes=32, max_k=1024, max_t=32,
                                        max_n=1024, count_tables=4),
                        frame_bytes=256, act_words=512, weight_words=32768,
                        thresh_words=256, result_beats=128, weight_store="ice40_spram"),
    totals={"LUT4": 5280, "FF": 5280, "BRAM": 30, "SPRAM": 4, "DSP": 8, "CARRY": 5280},
    seeds=(2, 8, 3, 5),
    # The FT2232H reaches the SPI flash, not the FPGA's configuration port: flash only.
    loader_board="ice40_generic",
    loader_targets=("flash",),
)
