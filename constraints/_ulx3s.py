"""What the ULX3S variants share: 25 MHz oscillator and PLL, FTDI UART, the default device."""

from ..flow.boards import Board
from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig


def ulx3s_device() -> DeviceConfig:
    """The GEMM-only device both ULX3S variants start from: a 4 x 4 x 32 array, block-RAM
    stores."""
    return DeviceConfig(core=CoreConfig(rows=4, cols=4, lanes=32, max_k=1024, max_t=64,
                                        max_n=1024),
                        frame_bytes=1024, act_words=2048, weight_words=8192, thresh_words=1024,
                        result_beats=512)


def ulx3s_board(size: str, platform: type, totals: dict[str, int], *,
                target_hz: float, device: DeviceConfig | None = None,
                seeds: tuple[int, ...] = (), router: str | None = None,
                placer_timing_weight: int | None = None,
                placer_crit_exp: int | None = None) -> Board:
    """The ULX3S with an LFE5U-``size`` (``"25F"``, ``"85F"``), its clock from the EHXPLLL;
    ``device`` replaces the default (GEMM-only) device; ``seeds``, ``router`` and the heap
    placer's weights go to nextpnr."""
    return Board(
        name=f"ulx3s-{size.lower()}", description=f"ULX3S (ECP5 LFE5U-{size})",
        platform=platform, family="ecp5", clock_resource="clk25", oscillator_hz=25e6,
        target_hz=target_hz, pll="ecp5", baud=1_000_000,
        device=device or ulx3s_device(),
        totals=totals, seeds=seeds, router=router, placer_timing_weight=placer_timing_weight,
        placer_crit_exp=placer_crit_exp, loader_board="ulx3s")
