"""A memory bank with one write port and one read port, on block RAM or iCE40 SPRAM.

Contract (both kinds): a write of ``wdata`` to ``waddr`` when ``wen``; a read of ``raddr`` when
``ren`` shows on ``rdata`` the next cycle; ``rdata`` holds while ``ren`` is low. The caller never
uses a word read in the cycle it writes it (the block RAM is marked ``no_rw_check``, so no
bypass for that case is built behind it: ``onebit.flow.no_rw_check``).

- ``"bram"``: an ``amaranth.lib.memory.Memory``; Yosys maps it to EBR (iCE40, ECP5) or
  distributed RAM.
- ``"ice40_spram"``: ``SB_SPRAM256KA`` blocks (16384 x 16 bits each, the iCE40 UP5K has four,
  1 Mbit in all), ``ceil(width / 16)`` side by side and ``ceil(depth / 16384)`` deep (the high
  address bits select a block row; a register remembers which row the last read used, so
  ``rdata`` holds while ``ren`` is low). At most 4 blocks. An SPRAM has one port: a cycle with
  ``wen`` writes and does not read, and the block's output is undefined after a write, so the
  caller must not use ``rdata`` of a bank it wrote since its last read (GemmCore reads and
  writes different halves of its ping-pong buffer, which are different banks).
"""

from amaranth.hdl import Array, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from ...host.core_config import (
    MEMORY_KINDS,
    SPRAM_BLOCKS,
    SPRAM_DEPTH,
    SPRAM_WIDTH,
    spram_blocks,
)

__all__ = ["MemoryBank"]


class MemoryBank(wiring.Component):
    """``depth`` words of ``width`` bits; read latency 1.

    Members
    -------
    waddr : In(range(depth));  wdata : In(width);  wen : In(1), or one enable per
        ``granularity`` bits (block RAM only)
    raddr : In(range(depth));  ren : In(1);  rdata : Out(width)
    """

    def __init__(self, *, width: int, depth: int, kind: str = "bram",
                 granularity: int | None = None):
        for name, v in (("Bank width", width), ("Bank depth", depth)):
            check_count(name, v)
        if kind not in MEMORY_KINDS:
            raise ValueError(f"Memory kind must be one of {', '.join(MEMORY_KINDS)}, not {kind!r}")
        if kind == "ice40_spram" and spram_blocks(width, depth) > SPRAM_BLOCKS:
            raise ValueError(f"A {width}-bit SPRAM bank of {depth} words needs "
                             f"{spram_blocks(width, depth)} SB_SPRAM256KA blocks; the iCE40 "
                             f"UP5K has {SPRAM_BLOCKS}")
        if granularity is not None:
            if isinstance(granularity, bool) or not isinstance(granularity, int) or \
                    granularity <= 0 or width % granularity:
                raise ValueError(f"Write granularity must be a positive divisor of the width "
                                 f"{width}, not {granularity!r}")
            if kind != "bram":
                raise ValueError(f"Write granularity needs a block RAM bank, not {kind!r}")
        self._width, self._depth, self._kind = width, depth, kind
        self._gran = granularity
        super().__init__({
            "waddr": In(range(depth)), "wdata": In(width),
            "wen": In(width // granularity if granularity else 1),
            "raddr": In(range(depth)), "ren": In(1), "rdata": Out(width),
        })

    @property
    def spram_blocks(self) -> int:
        """SB_SPRAM256KA blocks this bank uses (0 for block RAM)."""
        return spram_blocks(self._width, self._depth) if self._kind == "ice40_spram" else 0

    def elaborate(self, platform):
        m = Module()
        if self._kind == "bram":
            m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth, init=[],
                                                   attrs={"no_rw_check": 1})
            wr, rd = mem.write_port(granularity=self._gran), mem.read_port()
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen),
                         rd.addr.eq(self.raddr), rd.en.eq(self.ren), self.rdata.eq(rd.data)]
            return m
        cols = -(-self._width // SPRAM_WIDTH)
        rows = -(-self._depth // SPRAM_DEPTH)
        addr = Signal(range(max(self._depth, SPRAM_DEPTH)))
        m.d.comb += addr.eq(Mux(self.wen, self.waddr, self.raddr))
        row_sel = addr[14:] if rows > 1 else Const(0, 1)
        read_row = Signal(range(max(rows, 2)))
        with m.If(self.ren & ~self.wen):
            m.d.sync += read_row.eq(row_sel)
        outs = []
        for r in range(rows):
            select = (row_sel == r) if rows > 1 else Const(1, 1)
            dout = Signal(self._width, name=f"dout{r}")
            outs.append(dout)
            for b in range(cols):
                lo = b * SPRAM_WIDTH
                hi = min(lo + SPRAM_WIDTH, self._width)
                part = dout[lo:hi]
                m.submodules[f"spram{r}_{b}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:14],
                    i_DATAIN=self.wdata[lo:hi], i_MASKWREN=Const(0b1111, 4),
                    i_WREN=self.wen & select,
                    i_CHIPSELECT=(self.wen | self.ren) & select, i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=part if hi - lo == SPRAM_WIDTH else _pad(m, part, SPRAM_WIDTH))
        m.d.comb += self.rdata.eq(Array(outs)[read_row] if rows > 1 else outs[0])
        return m


def _pad(m, target, width):
    full = Signal(width)
    m.d.comb += target.eq(full[:len(target)])
    return full
