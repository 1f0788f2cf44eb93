"""UART transmitter and receiver (8N1) with byte streams, for the board host link.

The bit time is ``divisor`` clock cycles (``clk_hz / baud``); for example 48 MHz / 12 Mbaud is
4, the smallest divisor allowed. In simulation the host link is a plain byte stream and these
are not used.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count

__all__ = ["UARTTx", "UARTRx", "divisor_for"]


def divisor_for(clk_hz: int, baud: int) -> int:
    """Return ``round(clk_hz / baud)``; raise ``ValueError`` if it is below 4 or off by >2%."""
    for name, v in (("Clock frequency", clk_hz), ("Baud rate", baud)):
        check_count(name, v)
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"{baud} baud needs at least 4 clock cycles per bit; {clk_hz} Hz "
                         f"gives {clk_hz / baud:.2f}")
    error = abs(clk_hz / div - baud) / baud
    if error > 0.02:
        raise ValueError(f"{clk_hz} Hz cannot make {baud} baud within 2% (off by {error:.1%})")
    return div


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"Divisor must be an integer of at least 4, not {divisor!r}")


class UARTTx(wiring.Component):
    """Send each byte of ``i`` as 8N1 on ``tx`` (idle high).

    Members
    -------
    i : In(stream.Signature(8))
        Taken when the transmitter is idle; the byte goes out over the next ``10 * divisor``
        cycles.
    tx : Out(1, init=1)
    """

    def __init__(self, *, divisor: int):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))
        m.d.comb += self.tx.eq(shreg[0])
        with m.If(bits == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq((self.i.payload << 1) | (1 << 9)), bits.eq(10),
                             timer.eq(self._divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq((shreg >> 1) | (1 << 9)), bits.eq(bits - 1),
                         timer.eq(self._divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """Receive 8N1 bytes from ``rx`` into ``o``.

    ``rx`` goes through a two-flip-flop synchronizer; each bit is sampled in its middle. A byte
    whose stop bit is low is dropped and ``frame_error`` pulses. A received byte waits in the
    shift register until the output register is empty, then moves there (the cycle after its
    stop bit at the earliest). If the output register is still full when the next byte's first
    data bit is shifted in, the waiting byte is dropped and ``overrun`` pulses (the link's CRC
    then rejects the frame); backpressure shorter than a byte time loses nothing.

    Timing: ``o.ready`` reaches only ``o.valid``; the output register loads from registers
    (a byte waiting, the output empty), not from the consumer's handshake.

    Members
    -------
    rx : In(1)
    o : Out(stream.Signature(8))
    frame_error, overrun : Out(1)
    """

    def __init__(self, *, divisor: int):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "frame_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div + div // 2 + 1))
        bits = Signal(range(9))
        shreg = Signal(8)
        have = Signal()             # a received byte waits in ``shreg``
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(have & ~self.o.valid):
            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1), have.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"          # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bits.eq(8)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq((shreg >> 1) | (rx << 7)), timer.eq(div - 1),
                                 bits.eq(bits - 1)]
                    with m.If(have & self.o.valid):
                        m.d.sync += [self.overrun.eq(1), have.eq(0)]
                    with m.If(bits == 1):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.sync += self.frame_error.eq(1)
                    with m.Else():
                        m.d.sync += have.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m
