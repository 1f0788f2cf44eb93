"""The R x C array of processing elements, output-stationary, with registered operand buses.

Dataflow (output-stationary; ``x`` rows are tokens, ``w`` columns are output channels)::

              w[0]     w[1]    ...   w[C-1]      <- one chunk of L weight bits per column
               |        |              |
     x[0] --> PE00 --- PE01 --- ... - PE0,C-1    acc[r][c] += popcount(x[r] OP w[c])
               |        |              |
     x[1] --> PE10 --- PE11 --- ... - PE1,C-1    each PE keeps its (token, channel) sum while
     ...                                         the K chunks stream past; a tile of R tokens x
     x[R-1]-> PER-1,0 - ...          PER-1,C-1   C channels finishes after ceil(K / L) cycles

Operands reach a row or column over one registered bus per row and per column (the caller
registers them), not PE-to-PE forwarding: every PE sees chunk j in the same cycle, so every
accumulator of a tile finishes in the same cycle and the drain is a plain row multiplexer. Each
element registers its count before the accumulator's adder (``pe_stages`` cycles). On ECP5
each element also registers its own copy of its two operand buses, valid and last (``copies``;
one cycle more, ``2 L + 2`` flip-flops an element, which its carry chains' slices mostly have
spare): from one
register per bus, the route to eight elements' carry chains took 2.4-2.8 ns of the 6.7 ns
budget at 150 MHz (also with one copy per four elements), from an element's own copy 1.4 ns.
On iCE40 a flip-flop fed by a flip-flop takes a logic cell of its own, so there the buses stay
shared. A forwarded (skewed) array would add ``L`` flip-flops per lane-row per PE for the
operand pipeline, plus (R + C) skew stages at the edges and a deskew on the results.
Output-stationary is the right choice because a binary weight row is long (K up to thousands of
bits) while results are few: keeping accumulators in place moves only 1-bit operands.
"""

from amaranth.hdl import Cat, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CoreConfig
from ..lib.family import family
from ..lib.unmerged_register import unmerged_registers
from .pe import ProcessingElement

__all__ = ["ComputeArray"]


class ComputeArray(wiring.Component):
    """R x C processing elements, all enabled together.

    ``family`` (``"ice40"``, ``"ecp5"`` or None: the platform's, if any) chooses the
    elements' count (``count()``) and whether each element registers a copy of its operands
    (``copies``: None chooses by family, ``copies()``; True or False forces it, e.g. to
    simulate the copies).

    Latency ``latency()`` (a copy stage if any, then each ``ProcessingElement``'s
    ``config.pe_stages``): each cycle with ``en`` the chunk presented enters the pipeline,
    ``sum[r][c] = acc[r][c] + popcount(x[r] XOR w[c])`` of the chunk ``latency()`` ``en``
    cycles back, and that chunk, if valid, updates ``acc[r][c] <= last ? 0 : sum[r][c]``. A
    tile's results are ``sum`` in the ``latency()``-th ``en`` cycle after its last chunk.
    Without ``en`` everything holds.

    With ``config.max_bits > 1`` a ``shift`` tag goes with ``valid`` and ``last`` to every
    element: the chunk ends an activation plane, and the accumulators double
    (``ProcessingElement``'s ``planes``).

    Members
    -------
    x : In(ArrayLayout(lanes, rows));  w : In(ArrayLayout(lanes, cols))
    valid, last, en : In(1);  shift : In(1) (``max_bits > 1`` only)
    sum : Out(ArrayLayout(ArrayLayout(acc_width, cols), rows))
    """

    def __init__(self, config: CoreConfig, *, family: str | None = None,
                 copies: bool | None = None):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if family not in (None, "ice40", "ecp5"):
            raise ValueError(f"Family must be None, 'ice40' or 'ecp5', not {family!r}")
        if not (copies is None or isinstance(copies, bool)):
            raise TypeError(f"copies must be None, True or False, not {copies!r}")
        self._cfg = c = config
        self._family = family
        self._copies = copies
        ports = {
            "x": In(data.ArrayLayout(c.lanes, c.rows)),
            "w": In(data.ArrayLayout(c.lanes, c.cols)),
            "valid": In(1), "last": In(1), "en": In(1),
            "sum": Out(data.ArrayLayout(data.ArrayLayout(c.acc_width, c.cols), c.rows)),
        }
        if c.max_bits > 1:
            ports["shift"] = In(1)
        super().__init__(ports)

    @property
    def config(self) -> CoreConfig:
        return self._cfg

    def _family_of(self, platform) -> str | None:
        return self._family or family(platform) or None

    def count(self, platform=None) -> str:
        """The elements' count: ECP5 carry chains from 4 lanes, else the tree. The family is
        ``family`` if given, else the platform's."""
        family = self._family_of(platform)
        return "chains" if family == "ecp5" and self._cfg.lanes >= 4 else "tree"

    def copies(self, platform=None) -> bool:
        """Whether each element registers its own copy of its operands: ``copies`` if given,
        else on ECP5 when the array has more than one element."""
        if self._copies is not None:
            return self._copies
        return self._family_of(platform) == "ecp5" and self._cfg.rows * self._cfg.cols > 1

    def latency(self, platform=None) -> int:
        """``en`` cycles from a chunk on the buses to its count in ``sum``."""
        return self._cfg.pe_stages + self.copies(platform)

    def elaborate(self, platform):
        c = self._cfg
        count = self.count(platform)
        if count == "chains" and c.count_tables:
            raise ValueError(f"Count tables are for the tree count (iCE40, simulation), not "
                             f"ECP5's carry chains: count_tables={c.count_tables}")
        m = Module()
        copies = self.copies(platform)
        keep = "ecp5" if self._family_of(platform) == "ecp5" else None
        for r in range(c.rows):
            for col in range(c.cols):
                # On ECP5 the count runs on carry chains with the XOR folded in (about 1.8
                # LUT4 a lane with the accumulator, against 3.6 for the tree; docs/core.md).
                planes = c.max_bits > 1
                pe = ProcessingElement(lanes=c.lanes, acc_width=c.acc_width,
                                       stages=c.pe_stages, count=count,
                                       primitives=count == "chains", planes=planes,
                                       tables=c.count_tables)
                m.submodules[f"pe_{r}_{col}"] = pe
                x, w = self.x[r], self.w[col]
                tags = [self.valid, self.last] + ([self.shift] if planes else [])
                if copies:
                    # The element's own registered copy of its operands, placed by nextpnr
                    # beside its carry chains, and of valid and last (a shared copy fed the
                    # clear of every accumulator: 6 ns of routing on the 85F's 16 x 8 x 32);
                    # kept apart from their twins by synthesis on ECP5.
                    x, w = (Cat(*unmerged_registers(m, f"{name}_{r}_{col}", list(bus), self.en,
                                                    keep))
                            for name, bus in (("x", x), ("w", w)))
                    tags = unmerged_registers(m, f"ctl_{r}_{col}", tags, self.en, keep)
                m.d.comb += [pe.x.eq(x), pe.w.eq(w), pe.valid.eq(tags[0]),
                             pe.last.eq(tags[1]), pe.en.eq(self.en),
                             self.sum[r][col].eq(pe.sum)]
                if planes:
                    m.d.comb += pe.shift.eq(tags[2])
        return m
