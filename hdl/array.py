"""The R x C array of processing elements, output-stationary, with registered operand buses.

Dataflow (output-stationary; ``x`` rows are tokens, ``w`` columns are output channels)::

              w[0]     w[1]    ...   w[C-1]      <- one chunk of L weight bits per column
               |        |              |
     x[0] --> PE00 --- PE01 --- ... - PE0,C-1    acc[r][c] += popcount(x[r] OP w[c])
               |        |              |
     x[1] --> PE10 --- PE11 --- ... - PE1,C-1    each PE keeps its (token, channel) sum while
     ...                                         the K chunks stream past; a tile of R tokens x
     x[R-1]-> PER-1,0 - ...          PER-1,C-1   C channels finishes after ceil(K / L) cycles
               |
     x[r] --> ROWPOP[r]                          popcount(x[r]), for the AND mode's mdot

Operands reach a row or column over one registered bus per row and per column (the caller
registers them), not PE-to-PE forwarding: every PE sees chunk j in the same cycle, so every
accumulator of a tile finishes in the same cycle and the drain is a plain row multiplexer. A
forwarded (skewed) array would add ``L`` flip-flops per lane-row per PE for the operand pipeline,
plus (R + C) skew stages at the edges and a deskew on the results; at the array sizes that fit
iCE40 and ECP5 parts (up to 16 x 16) the bus fan-out is at most 16 and does not limit Fmax.
Output-stationary is the right choice because a binary weight row is long (K up to thousands of
bits) while results are few: keeping accumulators in place moves only 1-bit operands.
"""

from amaranth.hdl import Const, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..host.core_config import CoreConfig, Op
from .pe import ProcessingElement

__all__ = ["ComputeArray"]


class ComputeArray(wiring.Component):
    """R x C processing elements plus R row popcounts, all enabled together.

    Each cycle with ``en & valid``: for every r, c: ``acc[r][c] <= (first ? 0 : acc[r][c]) +
    popcount(x[r] OP w[c])`` and ``rowpop[r] <= (first ? 0 : rowpop[r]) + popcount(x[r])``.
    Latency 1: results show one cycle after the last chunk.

    Members
    -------
    x : In(ArrayLayout(lanes, rows));  w : In(ArrayLayout(lanes, cols))
    op : In(Op);  valid, first, en : In(1)
    acc : Out(ArrayLayout(ArrayLayout(acc_width, cols), rows))
    rowpop : Out(ArrayLayout(acc_width, rows))
    """

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self._cfg = c = config
        super().__init__({
            "x": In(data.ArrayLayout(c.lanes, c.rows)),
            "w": In(data.ArrayLayout(c.lanes, c.cols)),
            "op": In(Op), "valid": In(1), "first": In(1), "en": In(1),
            "acc": Out(data.ArrayLayout(data.ArrayLayout(c.acc_width, c.cols), c.rows)),
            "rowpop": Out(data.ArrayLayout(c.acc_width, c.rows)),
        })

    @property
    def config(self) -> CoreConfig:
        return self._cfg

    def _pe(self, m, name, x, w, op):
        pe = ProcessingElement(lanes=self._cfg.lanes, acc_width=self._cfg.acc_width)
        m.submodules[name] = pe
        m.d.comb += [pe.x.eq(x), pe.w.eq(w), pe.op.eq(op), pe.valid.eq(self.valid),
                     pe.first.eq(self.first), pe.en.eq(self.en)]
        return pe.acc

    def elaborate(self, platform):
        m = Module()
        c = self._cfg
        ones = Const((1 << c.lanes) - 1, c.lanes)
        for r in range(c.rows):
            for col in range(c.cols):
                acc = self._pe(m, f"pe_{r}_{col}", self.x[r], self.w[col], self.op)
                m.d.comb += self.acc[r][col].eq(acc)
            m.d.comb += self.rowpop[r].eq(self._pe(m, f"rowpop_{r}", self.x[r], ones, Op.AND))
        return m
