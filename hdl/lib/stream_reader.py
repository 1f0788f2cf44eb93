"""Stream a run of consecutive words out of a memory with one cycle of read latency.

``start`` (one cycle) latches ``base`` and ``count``; the reader then presents words
``base .. base + count - 1`` on ``o`` in order, one per cycle while ``o`` is ready. A FIFO
absorbs the cycles from read to FIFO, so backpressure never loses a word and the rate is one
word per cycle. With ``register_output`` each word read is registered before it enters the FIFO
(timing: a block RAM's output without its own register is slow, 5.8 ns clock-to-out on ECP5;
costs ``width`` flip-flops and one FIFO entry, which the nearly full iCE40 UP5K cannot spare).
``busy`` is high from ``start`` until the last word is taken. The memory is read through
``raddr``/``ren``/``rdata`` (``rdata`` valid the cycle after ``ren``), e.g. a ``MemoryBank``.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count

__all__ = ["MemoryStreamReader"]


class MemoryStreamReader(wiring.Component):
    """Members
    -------
    start : In(1);  base : In(range(depth));  count : In(range(depth + 1))
    raddr : Out(range(depth));  ren : Out(1);  rdata : In(width)
    o : Out(stream.Signature(width))
    busy : Out(1)
    """

    def __init__(self, *, width: int, depth: int, register_output: bool = True):
        for name, v in (("Reader width", width), ("Reader depth", depth)):
            check_count(name, v)
        if not isinstance(register_output, bool):
            raise TypeError(f"register_output must be a bool, not {register_output!r}")
        self._width, self._depth, self._reg = width, depth, register_output
        super().__init__({
            "start": In(1), "base": In(range(depth)), "count": In(range(depth + 1)),
            "raddr": Out(range(depth)), "ren": Out(1), "rdata": In(width),
            "o": Out(stream.Signature(width)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fifo_depth = 4 if self._reg else 3
        m.submodules.fifo = buf = fifo.SyncFIFO(width=self._width, depth=fifo_depth)
        addr = Signal(range(self._depth))
        left = Signal(range(self._depth + 1))
        issued = Signal()                       # a word read last cycle: on ``rdata`` now
        m.d.sync += issued.eq(self.ren)
        if self._reg:
            # ... and a cycle later, registered (no reset: on ECP5 it becomes the block RAM's
            # own output register, onebit.flow.ecp5_outreg).
            landed, word = Signal(), Signal(self._width, reset_less=True)
            m.d.sync += [landed.eq(issued), word.eq(self.rdata)]
            in_flight = issued + landed
        else:
            landed, word, in_flight = issued, self.rdata, issued
        # ``more``: ``left != 0``, kept in a register (timing: the read enable reaches the
        # memory's enables, far away for a wide store).
        more = Signal()
        m.d.comb += [self.raddr.eq(addr),
                     self.ren.eq(more & (buf.level + in_flight < fifo_depth))]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), left.eq(self.count), more.eq(self.count != 0)]
        with m.Elif(self.ren):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), more.eq(left != 1)]
        m.d.comb += [buf.w_data.eq(word), buf.w_en.eq(landed)]
        wiring.connect(m, buf.r_stream, wiring.flipped(self.o))
        m.d.comb += self.busy.eq(more | issued | landed | buf.r_rdy)
        return m
