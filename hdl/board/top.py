"""The full design for a board: clock (and PLL), UART, and ``DeviceLink`` between them.

The board's UART carries the host link at ``board.baud`` (8N1); the UART receiver has no flow
control, which the protocol does not need: the host sends one command and waits for its answer.
"""

from amaranth.hdl import ClockDomain, Module
from amaranth.lib import io, wiring

from ..link.device import DeviceLink
from ..link.uart import UARTRx, UARTTx, divisor_for
from .clocking import ClockReset, Ice40Pll, ecp5_pll, ice40_pll

__all__ = ["BoardTop", "board_clock", "uart_pins"]


def board_clock(m: Module, platform, board) -> None:
    """Add the ``sync`` domain to ``m``: the board's oscillator, or its PLL's output at
    ``board.target_hz``; held in reset until the PLL locks.

    The only clock constraint is the oscillator pin's (amaranth-boards' resource): nextpnr
    derives the PLL output's from the PLL's settings (iCE40: its dividers; ECP5:
    ``FREQUENCY_PIN_CLKOP``) and reports it ("Derived frequency constraint"). A constraint on
    the output net itself would name ``clocking.clk$1``, which synthesis merges into another
    name, so nextpnr would ignore it with a warning."""
    m.domains.sync = ClockDomain("sync")
    if board.pll == "ice40":
        pll = ice40_pll(board.oscillator_hz, board.target_hz)
    elif board.pll == "ecp5":
        pll = ecp5_pll(board.oscillator_hz, board.target_hz)
    else:
        pll = None
    if not isinstance(pll, Ice40Pll):
        m.submodules.clocking = clocking = ClockReset(pll=pll)
        m.submodules.clk_buf = clk_buf = io.Buffer(
            "i", platform.request(board.clock_resource, 0, dir="-"))
        m.d.comb += clocking.clk_in.eq(clk_buf.i)
    else:
        pad = platform.request(board.clock_resource, 0, dir="-")
        m.submodules.clocking = ClockReset(pll=pll, pad=pad.io)


def uart_pins(m: Module, platform):
    """Add buffers for the board's UART receive and transmit pins to ``m`` (every subsignal
    requested raw: some boards' UARTs also have rts/dtr, which stay unused); return them."""
    names = [sub.name for sub in platform.lookup("uart", 0).ios]
    uart = platform.request("uart", 0, dir=dict.fromkeys(names, "-"))
    m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
    m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
    return rx_buf, tx_buf


class BoardTop(wiring.Component):
    """Parameters
    ----------
    board : onebit.flow.boards.Board
        The board (``constraints/<name>.py``): platform, clock target, PLL, baud, device.
    """

    def __init__(self, board):
        self._board = board
        self.clk_hz = board.clock_hz()
        self.divisor = divisor_for(int(self.clk_hz), board.baud)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        board_clock(m, platform, self._board)
        b = self._board

        rx_buf, tx_buf = uart_pins(m, platform)
        m.submodules.uart_rx = rx = UARTRx(divisor=self.divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor=self.divisor)
        m.submodules.link = link = DeviceLink(b.device, timeout=max(1 << 12, 40 * self.divisor))
        m.d.comb += [rx.rx.eq(rx_buf.i), tx_buf.o.eq(tx.tx)]
        wiring.connect(m, rx.o, link.i)
        wiring.connect(m, link.o, tx.i)
        return m
