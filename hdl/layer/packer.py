"""The result packer: the GEMM core's thresholded result tiles back into activation rows.

A layer feeds the bits one projection makes (``Qb``, ``Kb``, ``Vb``, ``Hb``) into the next
operation as rows of ``ceil(N / L)`` words of ``L`` lanes, bit ``n % L`` of word ``n // L`` being
channel ``n`` (the spec's packing). The core emits, for each channel tile (``C`` channels) and
within it for each token tile (``R`` tokens), one beat of ``R x C`` bits (bit ``r * C + c``).
The packer writes row ``r`` of a beat as one ``C``-bit group of word
``base + token * ceil(N / L) + (tile * C) // L``, so its memory port has one write enable per
``C``-bit group (``L`` must be a multiple of ``C``). Tokens beyond ``T`` are not written.

Streams: ``cmd`` ``{t, n, base}`` starts a walk; ``i`` takes result beats (``ready`` is low
while a beat's rows are written, ``min(R, T - first token)`` cycles a beat); ``done`` pulses
after the beat marked ``last``. Multiplier-free: addresses advance by additions.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from ...host.core_config import CoreConfig
from ..core.gemm_layouts import result_layout

__all__ = ["ResultPacker"]


class ResultPacker(wiring.Component):
    """Members
    -------
    cmd : In(stream.Signature({t, n, base}))
    i : In(stream.Signature(result_layout(cfg)))
    waddr : Out(range(depth));  wdata : Out(L);  wen : Out(L // C)
    done : Out(1)
    """

    def __init__(self, cfg: CoreConfig, *, depth: int):
        if not isinstance(cfg, CoreConfig):
            raise TypeError(f"cfg must be a CoreConfig, not {cfg!r}")
        if cfg.lanes % cfg.cols:
            raise ValueError(f"ResultPacker needs lanes ({cfg.lanes}) to be a multiple of cols "
                             f"({cfg.cols}): a tile's channels fill one group of a word")
        check_count("ResultPacker depth", depth)
        self._cfg, self._depth = cfg, depth
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({
                "t": range(cfg.max_t + 1), "n": range(cfg.max_n + 1), "base": range(depth)}))),
            "i": In(stream.Signature(result_layout(cfg))),
            "waddr": Out(range(depth)), "wdata": Out(cfg.lanes),
            "wen": Out(cfg.lanes // cfg.cols),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._cfg
        R, C, L = c.rows, c.cols, c.lanes
        groups = L // C
        # A row holds N <= max_n bits (``3 D`` for Q|K|V, more than max_k), so the word
        # counters are sized by max_n, not by the core's longest K row.
        row_words = -(-c.max_n // L)
        addr_shape = range(self._depth + c.max_t * row_words + row_words + 1)

        t = Signal(range(c.max_t + 1))
        wpr = Signal(range(row_words + 1))             # words per row
        base = Signal(addr_shape)
        tile_word = Signal(range(row_words + 1))        # word of the current channel tile
        group = Signal(range(groups))                   # its C-bit group in that word
        tok0 = Signal(range(c.max_t + R + 1))           # first token of the current token tile
        tile_addr = Signal(addr_shape)                  # base + tok0 * wpr + tile_word
        row = Signal(range(R + 1))
        row_addr = Signal(addr_shape)
        bits = Signal(R * C)
        last = Signal()

        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    m.d.sync += [t.eq(p.t), wpr.eq((p.n + L - 1) >> c.lane_bits),
                                 base.eq(p.base), tile_word.eq(0), group.eq(0), tok0.eq(0),
                                 tile_addr.eq(p.base)]
                    m.next = "BEAT"
            with m.State("BEAT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [bits.eq(self.i.payload.bits), last.eq(self.i.payload.last),
                                 row.eq(0), row_addr.eq(tile_addr)]
                    m.next = "WRITE"
            with m.State("WRITE"):
                token = tok0 + row
                m.d.comb += [self.waddr.eq(row_addr),
                             self.wdata.eq(bits.word_select(row, C).replicate(groups)),
                             self.wen.eq((token < t).replicate(groups) & (1 << group))]
                m.d.sync += [row.eq(row + 1), row_addr.eq(row_addr + wpr)]
                # A tile's rows end at R or at the last token (T = 1 takes one cycle a beat).
                with m.If((row == R - 1) | (token + 1 >= t)):
                    m.next = "BEAT"
                    with m.If(last):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif(tok0 + R >= t):
                        # Next channel tile: back to token 0, one group further.
                        m.d.sync += tok0.eq(0)
                        with m.If(group == groups - 1):
                            m.d.sync += [group.eq(0), tile_word.eq(tile_word + 1),
                                         tile_addr.eq(base + tile_word + 1)]
                        with m.Else():
                            m.d.sync += [group.eq(group + 1), tile_addr.eq(base + tile_word)]
                    with m.Else():
                        m.d.sync += [tok0.eq(tok0 + R), tile_addr.eq(row_addr + wpr)]
        return m
