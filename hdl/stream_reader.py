"""Stream a run of consecutive words out of a memory with one cycle of read latency.

``start`` (one cycle) latches ``base`` and ``count``; the reader then presents words
``base .. base + count - 1`` on ``o`` in order, one per cycle while ``o`` is ready. A three-entry
FIFO absorbs the read latency, so backpressure never loses a word and the rate is one word per
cycle. ``busy`` is high from ``start`` until the last word is taken. The memory is read through
``raddr``/``ren``/``rdata`` (``rdata`` valid the cycle after ``ren``), e.g. a ``MemoryBank``.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MemoryStreamReader"]

_FIFO_DEPTH = 3


class MemoryStreamReader(wiring.Component):
    """Members
    -------
    start : In(1);  base : In(range(depth));  count : In(range(depth + 1))
    raddr : Out(range(depth));  ren : Out(1);  rdata : In(width)
    o : Out(stream.Signature(width))
    busy : Out(1)
    """

    def __init__(self, *, width: int, depth: int):
        for name, v in (("Reader width", width), ("Reader depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._width, self._depth = width, depth
        super().__init__({
            "start": In(1), "base": In(range(depth)), "count": In(range(depth + 1)),
            "raddr": Out(range(depth)), "ren": Out(1), "rdata": In(width),
            "o": Out(stream.Signature(width)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFO(width=self._width, depth=_FIFO_DEPTH)
        addr = Signal(range(self._depth))
        left = Signal(range(self._depth + 1))
        issued = Signal()
        m.d.comb += [self.raddr.eq(addr),
                     self.ren.eq((left != 0) & (buf.level + issued < _FIFO_DEPTH))]
        m.d.sync += issued.eq(self.ren)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), left.eq(self.count)]
        with m.Elif(self.ren):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
        m.d.comb += [buf.w_data.eq(self.rdata), buf.w_en.eq(issued)]
        wiring.connect(m, buf.r_stream, wiring.flipped(self.o))
        m.d.comb += self.busy.eq((left != 0) | issued | buf.r_rdy)
        return m
