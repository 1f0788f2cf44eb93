"""Mismatch count ``popcount(x XOR w)`` on ECP5 carry chains, the XOR folded into the chains.

An ECP5 ``CCU2C`` is two halves of a carry chain; each half has a LUT4 ``P(A, B, C, D)`` and a
carry ``COUT = P ? CIN : G`` with ``G(A, B) = P(A, B, 0, 0)`` (its INIT's low four bits), and
its sum is ``S = P ^ CIN`` (Yosys's ``ccu2c_sim.vh``). Five kinds of half are used here:

======== ========= ======================= ==============================================
kind     INIT      inputs                  what it computes
======== ========= ======================= ==============================================
FOLD2    ``6996``  w1, x1, w2, x2          a full adder of two lanes ``w1^x1``, ``w2^x2``
                                           and the carry in (``P = A^B^C^D``, ``G = A^B``)
PLAIN    ``042A``  a, b, a, b              a full adder of ``a``, ``b`` and the carry in
                                           (``P = A^B`` where ``C, D = A, B``; ``G = A``)
INC      ``8020``  a, a, a, a              a half adder of ``a`` and the carry in
INJECT   ``0006``  w, x, w, x              starts a chain's carry as the lane ``w^x`` (its
                                           sum is the carry in)
EXTRACT  ``0000``  any                     its sum is the carry in (a chain's carry out)
======== ========= ======================= ==============================================

So a pair of lanes costs one half with its XORs, instead of two XOR LUTs and a full adder
(``hdl/lib/popcount.py``'s tree). The count is a tree of ripple adders (``plan``): leaves of two
lanes (FOLD2, EXTRACT: a count of 0..2) or three (an INJECT of the third first), and adders of
two counts (PLAIN per bit, EXTRACT for the carry out when the sum can reach it, an INJECT of a
spare lane first), the shape chosen by dynamic programming over the lane count for the fewest
halves (ties: the shallower tree). The adders of one level of the tree share one physical
chain (``CarryChain``), where an INJECT takes the place of the EXTRACT before it: 31 lanes
take 41 halves (1.32 LUT4 a lane), against about 3 LUT4 a lane for the tree.

:meth:`CarryChain.emit` lowers a chain to ``CCU2C`` instances when asked (``primitives=True``,
for ECP5 synthesis) and otherwise to the same equations in plain logic, which the simulator runs:
both are the same cells, so the simulated structure is the synthesised one
(``tests/hdl/lib/test_carry_popcount.py`` checks the instances against Yosys's cell model).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from amaranth.hdl import Cat, Const, Instance, Module, Mux, Signal

__all__ = ["FOLD2", "PLAIN", "INC", "INJECT", "EXTRACT", "Half", "plain", "inject",
           "CarryChain", "plan", "Node"]

def _init(p, g, pattern) -> int:
    """A half's INIT: ``p(A, B)`` where ``(C, D)`` is ``pattern(A, B)`` (how the half is wired),
    ``g(A, B)`` at ``C = D = 0`` (the carry's G), 0 elsewhere; the two must agree where they
    meet."""
    init = 0
    for idx in range(16):
        a, b, c, d = idx & 1, idx >> 1 & 1, idx >> 2 & 1, idx >> 3 & 1
        bit = None
        if (c, d) == pattern(a, b):
            bit = p(a, b)
        if (c, d) == (0, 0):
            assert bit is None or bit == g(a, b)
            bit = g(a, b)
        init |= (bit or 0) << idx
    return init


# No half has a constant input (nextpnr gives each constant LUT input of a CCU2C a cell of its
# own): PLAIN and INJECT see their A and B again on C and D, EXTRACT any signal.
FOLD2 = 0x6996                                                   # A, B, C, D: two lanes
PLAIN = _init(lambda a, b: a ^ b, lambda a, b: a, lambda a, b: (a, b))        # a, b, a, b
INJECT = _init(lambda a, b: 0, lambda a, b: a ^ b, lambda a, b: (a, b))       # w, x, w, x
INC = _init(lambda a, b: a, lambda a, b: 0, lambda a, b: (a, b))             # a, a, a, a
EXTRACT = 0x0000                                                 # any


def plain(a, b) -> Half:
    """A full adder half of ``a``, ``b`` and the carry in (INC when one of them is 0)."""
    if isinstance(b, int):
        a, b = b, a
    if isinstance(a, int):
        return Half(INC, b, b, b, b)
    return Half(PLAIN, a, b, a, b)


def inject(w, x) -> Half:
    """A half that starts the chain's carry as the lane ``w ^ x``."""
    return Half(INJECT, w, x, w, x)


@dataclass(frozen=True)
class Half:
    """One half of a CCU2C: its INIT and its four inputs (Amaranth values of one bit)."""
    init: int
    a: object = 0
    b: object = 0
    c: object = 0
    d: object = 0


def _model(init: int, a, b, c, d, cin):
    """The half's sum and carry out, as Yosys's CCU2C model computes them."""
    p = Const(init, 16).bit_select(Cat(a, b, c, d), 1)
    g = Const(init & 0xF, 4).bit_select(Cat(a, b), 1)
    return p ^ cin, Mux(p, cin, g)


class CarryChain:
    """Logical chains (each with carry in 0) laid end to end in one physical carry chain.

    nextpnr gives every physical chain a feed-in ``CCU2C`` (Yosys ties the first carry in to a
    constant, which must come from the fabric) and a feed-out one (for the last carry out): two
    cells a chain. A count is dozens of short chains, so they share one chain per pipeline
    stage instead; the joints cost nothing or one half:

    - after an EXTRACT (``P = G = 0``: its carry out is 0 whatever its carry in), the next
      logical chain starts with carry 0;
    - an INJECT ignores its carry in (``P = 0``), and its sum is that carry in, so an EXTRACT
      followed by an INJECT merge into the INJECT half;
    - any other joint gets a break half (an EXTRACT whose sum is unused).

    The timing analyser sees one carry path through the joints, as it would through a chain.
    """

    def __init__(self, name: str):
        self._name = name
        self._halves: list[Half] = []
        self._outs: list[list[Signal]] = []

    def add(self, halves: list[Half]) -> list[Signal]:
        """Append a logical chain; return each of its halves' sums."""
        sums = [Signal(name=f"{self._name}_l{len(self._outs)}_{k}") for k in range(len(halves))]
        self._append(halves, [[out] for out in sums])
        return sums

    def extend(self, other: CarryChain) -> None:
        """Append ``other``'s halves after this chain's (``other`` is used up)."""
        self._append(other._halves, other._outs)
        other._halves, other._outs = [], []

    def _append(self, halves: list[Half], outs: list[list[Signal]]) -> None:
        for k, (half, out) in enumerate(zip(halves, outs, strict=True)):
            prev = self._halves[-1] if self._halves else None
            if k == 0 and prev is not None:
                if half.init == INJECT and prev.init == EXTRACT:
                    self._halves[-1] = half                  # the INJECT's sum is the carry
                    self._outs[-1] = self._outs[-1] + out
                    continue
                if half.init != INJECT and prev.init != EXTRACT:
                    self._halves.append(Half(EXTRACT))       # a break: carry 0
                    self._outs.append([])
            self._halves.append(half)
            self._outs.append(list(out))

    @property
    def halves(self) -> int:
        """Halves used so far (before the last CCU2C's padding)."""
        return len(self._halves)

    def emit(self, m: Module, *, primitives: bool) -> None:
        """Add the chain to ``m``: ``CCU2C`` instances, or their equations."""
        halves = self._halves + ([Half(EXTRACT)] if len(self._halves) % 2 else [])
        outs = self._outs + ([[]] if len(self._halves) % 2 else [])
        # An EXTRACT's inputs are unused (INIT 0): give them a signal of the chain, not
        # constants (nextpnr gives each constant input of a CCU2C a cell of its own).
        any_input = next(h.a for h in halves if not isinstance(h.a, int))
        halves = [Half(EXTRACT, *[any_input] * 4) if h.init == EXTRACT else h for h in halves]
        sums = [Signal(name=f"{self._name}_s{i}") for i in range(len(halves))]
        for targets, s in zip(outs, sums, strict=True):
            m.d.comb += [t.eq(s) for t in targets]
        carry, name = Const(0, 1), self._name
        for i in range(0, len(halves), 2):
            h0, h1 = halves[i], halves[i + 1]
            cout = Signal(name=f"{name}_co{i // 2}")
            if primitives:
                m.submodules[f"{name}_ccu{i // 2}"] = Instance(
                    "CCU2C", p_INIT0=Const(h0.init, 16), p_INIT1=Const(h1.init, 16),
                    p_INJECT1_0="NO", p_INJECT1_1="NO", i_CIN=carry,
                    i_A0=h0.a, i_B0=h0.b, i_C0=h0.c, i_D0=h0.d,
                    i_A1=h1.a, i_B1=h1.b, i_C1=h1.c, i_D1=h1.d,
                    o_S0=sums[i], o_S1=sums[i + 1], o_COUT=cout)
            else:
                s0, c0 = _model(h0.init, h0.a, h0.b, h0.c, h0.d, carry)
                mid = Signal(name=f"{name}_c{i}")
                m.d.comb += [sums[i].eq(s0), mid.eq(c0)]
                s1, c1 = _model(h1.init, h1.a, h1.b, h1.c, h1.d, mid)
                m.d.comb += [sums[i + 1].eq(s1), cout.eq(c1)]
            carry = cout


@dataclass(frozen=True)
class Node:
    """A count in the plan: ``lanes`` lanes covered (its largest value), ``cost`` in halves
    of its whole subtree, ``height`` in chains; ``parts`` are two child nodes, or empty for a
    pair of lanes (or three, with ``inject``); ``inject`` says whether its chain starts with a
    spare lane. An INJECT is costed free: in a ``CarryChain`` it takes the place of the
    EXTRACT that ends the chain before it."""
    lanes: int
    cost: int
    height: int
    parts: tuple = ()
    inject: bool = False

    @property
    def width(self) -> int:
        return self.lanes.bit_length()


def _adder_halves(a: Node, b: Node, inject: bool) -> int:
    w = max(a.width, b.width)
    top = a.lanes + b.lanes + inject
    return w + (top >= 1 << w)


@cache
def plan(lanes: int) -> Node:
    """The cheapest tree of chains that counts ``lanes`` (at least 2) lanes."""
    if lanes < 2:
        raise ValueError(f"A carry-chain count needs at least 2 lanes, not {lanes}")
    if lanes == 2:
        return Node(2, 2, 1)
    # Three lanes: a pair whose chain starts with the third (INJECT, FOLD2, EXTRACT).
    best = Node(3, 2, 1, (), True) if lanes == 3 else None
    for inject in (0, 1):
        rest = lanes - inject
        for a in range(2, rest // 2 + 1):
            left, right = plan(a), plan(rest - a)
            halves = _adder_halves(left, right, bool(inject))
            node = Node(lanes, left.cost + right.cost + halves,
                        1 + max(left.height, right.height), (left, right), bool(inject))
            if best is None or (node.cost, node.height) < (best.cost, best.height):
                best = node
    return best
