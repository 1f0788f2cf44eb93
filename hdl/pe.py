"""Processing element: ``lanes`` lanes of XOR-popcount into an accumulator."""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .popcount import popcount_tree

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """One element of the array (output-stationary: the accumulator stays, operands stream).

    Each cycle with ``en & valid``: ``acc <= (first ? 0 : acc) + popcount(x XOR w)``;
    otherwise ``acc`` holds. ``acc`` shows the sum one cycle after the chunk is presented.

    The count of mismatches gives both products of the spec over the K valid bits (padding is
    zero in both operands, so it never mismatches):

    - ``dot(x, w) = K - 2 * acc`` (the XNOR-popcount form ``2 * popcount(XNOR) - K``);
    - ``mdot(p, w) = 2 * popcount(p AND w) - popcount(p) = popcount(w) - acc``, because
      ``popcount(p XOR w) = popcount(p) + popcount(w) - 2 * popcount(p AND w)``.

    So the AND-popcount mode needs no second datapath in the element: the core counts
    ``popcount(w)`` once per weight row as it loads it. (An element with an XOR/AND select costs
    0.7 LUT4 per lane more on iCE40; see ``hdl/popcount.py`` for the measurements.)

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
            "x": In(lanes), "w": In(lanes),
            "valid": In(1), "first": In(1), "en": In(1),
            "acc": Out(acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        diff = self.x ^ self.w
        count = popcount_tree(m, [diff[i] for i in range(self._lanes)])
        with m.If(self.en & self.valid):
            m.d.sync += self.acc.eq(Mux(self.first, 0, self.acc) + count)
        return m
