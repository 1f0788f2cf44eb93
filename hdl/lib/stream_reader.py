"""Stream a run of consecutive words out of a memory with one cycle of read latency.

``start`` (one cycle) latches ``base`` and ``count``; the reader then presents words
``base .. base + count - 1`` on ``o`` in order, one per cycle while ``o`` is ready, and never
loses a word to backpressure. ``busy`` is high from ``start`` until the last word is taken. The
memory is read through ``raddr``/``ren``/``rdata`` (``rdata`` valid ``latency`` cycles after
``ren``, 1 or 2, and held while ``ren`` is low), e.g. a ``MemoryBank`` or a ``BankedStore``.
Two forms:

- ``register_output=True``: each word read is registered before it enters a FIFO of
  ``3 + latency`` words (room for every read in flight, so a word a cycle streams), and the
  read enable depends on registers only (timing: a block RAM's output without its own register
  is slow, 5.8 ns clock-to-out on ECP5, and a wide store's enables are far away).
- ``register_output=False``: no buffer at all. The memory's own output holds the word presented
  (``o.payload`` is ``rdata``), and the next word is read in the cycle this one is taken, so
  ``ren`` follows ``o.ready`` combinationally (``ren = more & (~have | o.ready)``). No flip-flop
  a bit of width: for the iCE40 UP5K, whose logic cells are the limit and whose consumers'
  ``ready`` are registers (the GEMM core's loader states). ``latency`` 1 only.
"""

from amaranth.hdl import Cat, Module, Signal
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

    def __init__(self, *, width: int, depth: int, register_output: bool = True,
                 latency: int = 1):
        for name, v in (("Reader width", width), ("Reader depth", depth)):
            check_count(name, v)
        if not isinstance(register_output, bool):
            raise TypeError(f"register_output must be a bool, not {register_output!r}")
        if latency not in (1, 2):
            raise ValueError(f"Reader latency must be 1 or 2, not {latency!r}")
        if latency == 2 and not register_output:
            raise ValueError("Reader latency 2 needs register_output=True")
        self._latency = latency
        self._width, self._depth, self._reg = width, depth, register_output
        super().__init__({
            "start": In(1), "base": In(range(depth)), "count": In(range(depth + 1)),
            "raddr": Out(range(depth)), "ren": Out(1), "rdata": In(width),
            "o": Out(stream.Signature(width)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        addr = Signal(range(self._depth))
        left = Signal(range(self._depth + 1))
        # ``more``: ``left != 0``, kept in a register (timing: the read enable reaches the
        # memory's enables, far away for a wide store).
        more = Signal()
        m.d.comb += self.raddr.eq(addr)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), left.eq(self.count), more.eq(self.count != 0)]
        with m.Elif(self.ren):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), more.eq(left != 1)]
        if not self._reg:
            have = Signal()                     # ``rdata`` holds a word not yet taken
            m.d.comb += [self.ren.eq(more & (~have | self.o.ready)),
                         self.o.valid.eq(have), self.o.payload.eq(self.rdata),
                         self.busy.eq(more | have)]
            m.d.sync += have.eq(self.ren | (have & ~self.o.ready))
            return m
        fifo_depth = 3 + self._latency
        m.submodules.fifo = buf = fifo.SyncFIFO(width=self._width, depth=fifo_depth)
        # ``issued[i]``: a word read ``i + 1`` cycles ago (the last on ``rdata`` now) ...
        issued = [Signal(name=f"issued{i}") for i in range(self._latency)]
        m.d.sync += [issued[0].eq(self.ren)] + [
            b.eq(a) for a, b in zip(issued, issued[1:], strict=False)]
        # ... and a cycle later, registered (no reset: on ECP5, behind a block RAM, it becomes
        # the block's own output register, onebit.flow.ecp5_outreg).
        landed, word = Signal(), Signal(self._width, reset_less=True)
        m.d.sync += [landed.eq(issued[-1]), word.eq(self.rdata)]
        m.d.comb += self.ren.eq(more & (buf.level + sum(issued) + landed < fifo_depth))
        m.d.comb += [buf.w_data.eq(word), buf.w_en.eq(landed)]
        wiring.connect(m, buf.r_stream, wiring.flipped(self.o))
        m.d.comb += self.busy.eq(more | Cat(*issued).any() | landed | buf.r_rdy)
        return m
