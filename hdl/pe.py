"""Processing element: ``lanes`` lanes of XOR-popcount into an accumulator."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .popcount import popcount_tree

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """One element of the array (output-stationary: the accumulator stays, operands stream).

    Two stages (timing: the popcount tree and the accumulator's adder are in different cycles).
    Each cycle with ``en``, the count ``popcount(x XOR w)`` of the chunk presented, with its
    ``valid`` and ``last``, moves into a register ``c`` (with ``c_valid``, ``c_last``; ``c`` is
    kept as the two rows of the popcount's carry-save tree); ``sum = acc + c`` (combinational:
    one level of full adders and one carry chain); and if ``c_valid``,
    ``acc <= c_last ? 0 : sum``. Without ``en`` everything holds. So a row's count is ``sum`` in
    the first ``en`` cycle after its last chunk was presented (latency 1: the caller captures it
    then), and the accumulator starts the next row at zero; clearing on ``last`` maps onto the
    flip-flops' synchronous reset, which a clear on the first chunk
    (``(first ? 0 : acc) + count``) cannot.

    The count of mismatches gives both products of the spec over the K valid bits (padding is
    zero in both operands, so it never mismatches):

    - ``dot(x, w) = K - 2 * acc`` (the XNOR-popcount form ``2 * popcount(XNOR) - K``);
    - ``mdot(p, w) = 2 * popcount(p AND w) - popcount(p) = popcount(w) - acc``, because
      ``popcount(p XOR w) = popcount(p) + popcount(w) - 2 * popcount(p AND w)``.

    So the AND-popcount mode needs no second datapath in the element: the core counts
    ``popcount(w)`` once per weight row as it loads it. (An element with an XOR/AND select costs
    0.5 LUT4 per lane more on iCE40; see ``hdl/popcount.py`` for the measurements.)

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
    valid, last, en : In(1)
    acc : Out(acc_width)
    sum : Out(acc_width)
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
            "valid": In(1), "last": In(1), "en": In(1),
            "acc": Out(acc_width), "sum": Out(acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self._acc_width
        diff = self.x ^ self.w
        # The count is registered as the carry-save tree's two rows (its final adder merges
        # into the accumulator's: one level of full adders, then one carry chain).
        rows = popcount_tree(m, [diff[i] for i in range(self._lanes)], rows=True)
        c0, c1 = Signal(len(rows[0]), name="c0"), Signal(len(rows[1]), name="c1")
        c_valid, c_last = Signal(), Signal()
        a, b, d = self.acc, Signal(aw), Signal(aw)
        m.d.comb += [b.eq(c0), d.eq(c1)]
        m.d.comb += self.sum.eq((a ^ b ^ d) + (((a & b) | (a & d) | (b & d)) << 1)[:aw])
        with m.If(self.en):
            m.d.sync += [c0.eq(rows[0]), c1.eq(rows[1]), c_valid.eq(self.valid),
                         c_last.eq(self.last)]
            with m.If(c_valid):
                m.d.sync += self.acc.eq(Mux(c_last, 0, self.sum))
        return m
