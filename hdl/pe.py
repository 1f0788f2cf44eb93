"""Processing element: ``lanes`` lanes of XOR- (or AND-) popcount into an accumulator."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..host.core_config import Op
from .popcount import popcount_tree

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """One element of the array (output-stationary: the accumulator stays, operands stream).

    Each cycle with ``en & valid``: ``acc <= (first ? 0 : acc) + popcount(x OP w)``, where OP is
    XOR for ``Op.XOR`` and AND for ``Op.AND``. Otherwise ``acc`` holds. Latency: ``acc`` shows
    the sum one cycle after the chunk is presented.

    Parameters
    ----------
    lanes : int
        Bits of ``x`` and ``w`` per cycle.
    acc_width : int
        Accumulator width; the caller derives it from the longest row
        (``CoreConfig.acc_width``) so that no row can overflow it.

    Members
    -------
    x, w : In(lanes)
    op : In(Op)
    valid, first, en : In(1)
    acc : Out(acc_width)
    """

    def __init__(self, *, lanes: int, acc_width: int):
        for name, v in (("Lane count", lanes), ("Accumulator width", acc_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if acc_width < lanes.bit_length():
            raise ValueError(f"Accumulator width must hold one chunk's count of {lanes}, "
                             f"so be at least {lanes.bit_length()}, not {acc_width}")
        self._lanes, self._acc_width = lanes, acc_width
        super().__init__({
            "x": In(lanes), "w": In(lanes), "op": In(Op),
            "valid": In(1), "first": In(1), "en": In(1),
            "acc": Out(acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        bits = Signal(lanes)
        m.d.comb += bits.eq(Mux(self.op == Op.AND, self.x & self.w, self.x ^ self.w))
        count = popcount_tree(m, [bits[i] for i in range(lanes)])
        with m.If(self.en & self.valid):
            m.d.sync += self.acc.eq(Mux(self.first, 0, self.acc) + count)
        return m
