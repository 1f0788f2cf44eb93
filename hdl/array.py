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
element registers its count before the accumulator's adder (``pe_stages`` cycles). A
forwarded (skewed) array would add ``L`` flip-flops per lane-row per PE for the operand pipeline,
plus (R + C) skew stages at the edges and a deskew on the results; at the array sizes that fit
iCE40 and ECP5 parts (up to 16 x 16) the bus fan-out is at most 16 and does not limit Fmax.
Output-stationary is the right choice because a binary weight row is long (K up to thousands of
bits) while results are few: keeping accumulators in place moves only 1-bit operands.
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..host.core_config import CoreConfig
from .pe import ProcessingElement

__all__ = ["ComputeArray"]


class ComputeArray(wiring.Component):
    """R x C processing elements, all enabled together.

    ``family`` (``"ice40"``, ``"ecp5"`` or None: the platform's, if any) chooses the
    elements' count (``count()``).

    For every r, c a ``ProcessingElement`` (latency ``config.pe_stages``): each cycle with
    ``en`` the chunk's count ``popcount(x[r] XOR w[c])`` enters the element's register stages,
    ``sum[r][c] = acc[r][c] + count`` of the chunk ``pe_stages`` ``en`` cycles back, and that
    chunk, if valid, updates ``acc[r][c] <= last ? 0 : sum[r][c]``. A tile's results are
    ``sum`` in the ``pe_stages``-th ``en`` cycle after its last chunk.

    Members
    -------
    x : In(ArrayLayout(lanes, rows));  w : In(ArrayLayout(lanes, cols))
    valid, last, en : In(1)
    sum : Out(ArrayLayout(ArrayLayout(acc_width, cols), rows))
    """

    def __init__(self, config: CoreConfig, *, family: str | None = None):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if family not in (None, "ice40", "ecp5"):
            raise ValueError(f"Family must be None, 'ice40' or 'ecp5', not {family!r}")
        self._cfg = c = config
        self._family = family
        super().__init__({
            "x": In(data.ArrayLayout(c.lanes, c.rows)),
            "w": In(data.ArrayLayout(c.lanes, c.cols)),
            "valid": In(1), "last": In(1), "en": In(1),
            "sum": Out(data.ArrayLayout(data.ArrayLayout(c.acc_width, c.cols), c.rows)),
        })

    @property
    def config(self) -> CoreConfig:
        return self._cfg

    def count(self, platform=None) -> str:
        """The elements' count: ECP5 carry chains from 4 lanes, else the tree. The family is
        ``family`` if given, else the platform's."""
        family = self._family or str(getattr(platform, "family", "")).lower()
        return "chains" if family == "ecp5" and self._cfg.lanes >= 4 else "tree"

    def elaborate(self, platform):
        m = Module()
        c = self._cfg
        count = self.count(platform)
        for r in range(c.rows):
            for col in range(c.cols):
                # On ECP5 the count runs on carry chains with the XOR folded in (about 1.8
                # LUT4 a lane with the accumulator, against 3.6 for the tree; docs/core.md).
                pe = ProcessingElement(lanes=c.lanes, acc_width=c.acc_width,
                                       stages=c.pe_stages, count=count,
                                       primitives=count == "chains")
                m.submodules[f"pe_{r}_{col}"] = pe
                m.d.comb += [pe.x.eq(self.x[r]), pe.w.eq(self.w[col]), pe.valid.eq(self.valid),
                             pe.last.eq(self.last), pe.en.eq(self.en),
                             self.sum[r][col].eq(pe.sum)]
        return m
