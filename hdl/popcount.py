"""Popcount: the number of set bits of a vector, as a balanced adder tree.

Amaranth has no popcount primitive. This one adds pairs of partial sums level by level; each
level's adders are exactly as wide as their result needs, so Yosys maps them onto carry chains
(iCE40 ``SB_CARRY``, ECP5 ``CCU2C``).
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Popcount", "popcount_tree"]


def popcount_tree(m: Module, bits: list, name: str = "pc"):
    """Return a value that counts the set bits of ``bits`` (a list of 1-bit values)."""
    level = [b.as_unsigned() for b in bits]
    depth = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            a, b = level[i], level[i + 1]
            width = max(a.shape().width, b.shape().width) + 1
            s = Signal(unsigned(width), name=f"{name}_l{depth}_{i // 2}")
            m.d.comb += s.eq(a + b)
            nxt.append(s)
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    return level[0]


class Popcount(wiring.Component):
    """Count the set bits of ``i``; combinational (latency 0).

    Parameters
    ----------
    width : int
        Width of ``i``; positive.

    Members
    -------
    i : In(width)
    o : Out(width.bit_length())
        ``popcount(i)``.
    """

    def __init__(self, *, width: int):
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ValueError(f"Popcount width must be a positive integer, not {width!r}")
        self._width = width
        super().__init__({"i": In(width), "o": Out(width.bit_length())})

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(popcount_tree(m, [self.i[k] for k in range(self._width)]))
        return m
