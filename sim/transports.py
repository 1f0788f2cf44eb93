"""Open a simulated device for ``Accelerator.open("sim", ...)``."""

from __future__ import annotations

from dataclasses import replace

from ..host.device_config import DeviceConfig

__all__ = ["open_sim", "SIM_BACKENDS"]

SIM_BACKENDS = ("amaranth", "verilator", "icarus")


def open_sim(*, simulator: str = "amaranth", config: DeviceConfig | None = None,
             board: str | None = None, timeout_cycles: int = 256, **core_options):
    """A transport to ``DeviceLink`` on ``simulator``. ``config`` sets the device; otherwise
    ``core_options`` (``rows``, ``cols``, ``lanes``, ``max_k``, ...) change the default core.

    ``board`` (a board of ``constraints/``, as ``onebit build --board`` takes) runs the device
    of that board's bitstream: its ``DeviceConfig``, elaborated for its platform (the family's
    primitives, with Yosys's cell models), on Icarus or Verilator; only the clock, PLL and UART
    around it are not simulated."""
    if simulator not in SIM_BACKENDS:
        raise ValueError(f"simulator must be one of {', '.join(SIM_BACKENDS)}, "
                         f"not {simulator!r}")
    if board is not None:
        from ..flow.boards import board as find_board

        if config is not None or core_options:
            raise TypeError(f"board {board!r} fixes the device: give no config or core options, "
                            f"not {sorted([*core_options] + ['config'] * (config is not None))}")
        if simulator == "amaranth":
            raise ValueError(f"board {board!r} needs its family's primitive cells: use "
                             f"simulator='icarus' or 'verilator', not 'amaranth'")
        b = find_board(board)
        from .cocotb_link import CocotbLinkTransport

        return CocotbLinkTransport(b.device, simulator=simulator, timeout_cycles=timeout_cycles,
                                   platform=b.platform())
    if config is None:
        dev = DeviceConfig()
        config = replace(dev, core=replace(dev.core, **core_options))
    elif core_options:
        raise TypeError(f"give either config or core options, not both ({sorted(core_options)})")
    if not isinstance(config, DeviceConfig):
        raise TypeError(f"config must be a DeviceConfig, not {config!r}")
    if simulator == "amaranth":
        from .link_transport import AmaranthLinkTransport

        return AmaranthLinkTransport(config, timeout_cycles=timeout_cycles)
    from .cocotb_link import CocotbLinkTransport

    return CocotbLinkTransport(config, simulator=simulator, timeout_cycles=timeout_cycles)
