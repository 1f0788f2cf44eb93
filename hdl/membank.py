"""A memory bank with one write port and one read port, on block RAM or iCE40 SPRAM.

Contract (both kinds): a write of ``wdata`` to ``waddr`` when ``wen``; a read of ``raddr`` when
``ren`` shows on ``rdata`` the next cycle; ``rdata`` holds while ``ren`` is low. The caller never
reads a word in the cycle it writes it.

- ``"bram"``: an ``amaranth.lib.memory.Memory``; Yosys maps it to EBR (iCE40, ECP5) or
  distributed RAM.
- ``"ice40_spram"``: ``SB_SPRAM256KA`` blocks (16384 x 16 bits each, the iCE40 UP5K has four,
  1 Mbit in all), ``ceil(width / 16)`` side by side. An SPRAM has one port: a cycle with ``wen``
  writes and does not read, and the block's output is undefined after a write, so the caller
  must not use ``rdata`` of a bank it wrote since its last read (GemmCore reads and writes
  different halves of its ping-pong buffer, which are different banks).
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..host.core_config import MEMORY_KINDS, SPRAM_DEPTH, SPRAM_WIDTH

__all__ = ["MemoryBank"]


class MemoryBank(wiring.Component):
    """``depth`` words of ``width`` bits; read latency 1.

    Members
    -------
    waddr : In(range(depth));  wdata : In(width);  wen : In(1)
    raddr : In(range(depth));  ren : In(1);  rdata : Out(width)
    """

    def __init__(self, *, width: int, depth: int, kind: str = "bram"):
        for name, v in (("Bank width", width), ("Bank depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if kind not in MEMORY_KINDS:
            raise ValueError(f"Memory kind must be one of {', '.join(MEMORY_KINDS)}, not {kind!r}")
        if kind == "ice40_spram" and depth > SPRAM_DEPTH:
            raise ValueError(f"An SPRAM bank holds at most {SPRAM_DEPTH} words, not {depth}")
        self._width, self._depth, self._kind = width, depth, kind
        super().__init__({
            "waddr": In(range(depth)), "wdata": In(width), "wen": In(1),
            "raddr": In(range(depth)), "ren": In(1), "rdata": Out(width),
        })

    @property
    def spram_blocks(self) -> int:
        """SB_SPRAM256KA blocks this bank uses (0 for block RAM)."""
        return -(-self._width // SPRAM_WIDTH) if self._kind == "ice40_spram" else 0

    def elaborate(self, platform):
        m = Module()
        if self._kind == "bram":
            m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth, init=[])
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen),
                         rd.addr.eq(self.raddr), rd.en.eq(self.ren), self.rdata.eq(rd.data)]
            return m
        address = Signal(14)
        m.d.comb += address.eq(Mux(self.wen, self.waddr, self.raddr))
        for b in range(self.spram_blocks):
            lo = b * SPRAM_WIDTH
            hi = min(lo + SPRAM_WIDTH, self._width)
            dout = self.rdata[lo:hi]
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address,
                i_DATAIN=self.wdata[lo:hi], i_MASKWREN=Const(0b1111, 4), i_WREN=self.wen,
                i_CHIPSELECT=self.wen | self.ren, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                o_DATAOUT=dout if hi - lo == SPRAM_WIDTH else _pad(m, dout, SPRAM_WIDTH))
        return m


def _pad(m, target, width):
    full = Signal(width)
    m.d.comb += target.eq(full[:len(target)])
    return full
