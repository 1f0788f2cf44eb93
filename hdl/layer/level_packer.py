"""The layer engine's level packer: A-bit levels into the activation store as bit-planes.

Each beat on ``i`` (``onebit.hdl.layer.multi_threshold.levels_layout``) holds ``cols`` levels,
the word of their row's top plane (``addr``) and their group in the word (``gsel``). Plane
``p`` (bit ``A - 1 - p``) of a word goes to ``addr + p * plane_words``, the layout the GEMM
core and the GEMV unit read. With ``copy_words`` (not 0) each plane is written twice, the copy
``copy_words`` further on (a row that products read against ternary weight rows, whose two
planes lie side by side). A word's ``n = A`` planes (``2 A`` with copies) take ``n`` writes.

Token-major passes (``tile_major`` low: a row's groups one after the other) write each beat's
planes as it comes, one a cycle, each write enabling the beat's group: a beat takes ``n``
cycles (``i.ready`` is high in its last write's cycle).

Tile-major passes (a product's results or a residual pass: the ``period`` tokens of a group,
then the next group) gather each token's word in a buffer (two halves of ``max_t`` words,
rounded up to a power of two, of ``max_bits`` planes: the word being gathered and the one
before), so a beat takes one cycle.
While the tokens' next word is gathered, the beat of group ``s`` writes plane ``s`` of its
token's word before; the beat of a word's last group writes what is left of it (so with
``n <= lanes / cols`` every beat takes one cycle). After the pass's last beat the last words
are written, ``n`` a token. Latency of a write: one cycle (the buffer's read).

``setup`` (one cycle, while the packer is idle) starts a pass: it takes ``tile_major``,
``plane_words`` and ``copy_words`` and clears ``written``, the count of beats whose planes are
written (in a tile-major pass it reaches the pass's beats when the last words are written);
``bits_m1`` is static.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from .multi_threshold import levels_layout

__all__ = ["LevelPacker"]


class LevelPacker(wiring.Component):
    """Members
    -------
    setup, tile_major : In(1);  plane_words, copy_words : In(range(act_words + 1))
    bits_m1 : In(range(max_bits))
    i : In(stream.Signature(levels_layout(dev)))
    act_waddr : Out(range(act_words));  act_wdata : Out(lanes);  act_wen : Out(lanes // cols)
    written : Out(32)
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev, layer_for="LevelPacker")
        self._dev = dev
        c, ly = dev.core, dev.layer
        super().__init__({
            "setup": In(1), "tile_major": In(1), "plane_words": In(range(dev.act_words + 1)),
            "copy_words": In(range(dev.act_words + 1)),
            "bits_m1": In(range(ly.max_bits)),
            "i": In(stream.Signature(levels_layout(dev))),
            "act_waddr": Out(range(dev.act_words)), "act_wdata": Out(c.lanes),
            "act_wen": Out(c.lanes // c.cols), "written": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        C, gpw, nb, L = c.cols, c.lanes // c.cols, dev.layer.max_bits, c.lanes
        tok_bits = max(1, (c.max_t - 1).bit_length())
        rows = 1 << tok_bits                          # a half: a word for each token
        beat = self.i.payload
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)

        tile = Signal()
        plane_words = Signal.like(self.plane_words)
        copy_words = Signal.like(self.copy_words)
        copies = Signal()
        n_ops = Signal(range(2 * nb + 1))             # writes a word: A, or 2 A with copies
        m.d.comb += [copies.eq(copy_words != 0),
                     n_ops.eq(Mux(copies, (self.bits_m1 + 1) << 1, self.bits_m1 + 1))]
        offsets = [Signal(range(nb * (dev.act_words + 1)), name=f"offset{p}") for p in range(nb)]
        for p in range(nb):
            m.d.comb += offsets[p].eq(plane_words * p)

        def op_target(j):
            """Plane (0 = top) and copy of write ``j`` of a word."""
            return Mux(copies, j >> 1, j), Mux(copies, j[0], 0)

        def plane_addr(base, p, copy):
            return base + Array(offsets)[p] + Mux(copy, copy_words, 0)

        # ------------------------------------------------ token-major: a beat's planes in turn
        j_tm = Signal(range(2 * nb))
        tm_last = Signal()
        tm_p, tm_copy = op_target(j_tm)
        lv = beat.levels
        tm_bit = Signal(range(nb))
        m.d.comb += [tm_last.eq(j_tm == n_ops - 1), tm_bit.eq(self.bits_m1 - tm_p)]

        # ------------------------------------------------ tile-major: the word buffer
        m.submodules.planes = planes = memory.Memory(shape=nb * L, depth=2 * rows, init=[])
        meta = data.StructLayout({"addr": range(dev.act_words), "last_s": range(gpw)})
        m.submodules.metas = metas = memory.Memory(shape=meta, depth=2 * rows, init=[])
        pw = planes.write_port(granularity=C)
        mw = metas.write_port()
        pr = planes.read_port()
        mr = metas.read_port()
        half = Signal()                               # the half being gathered
        has_prev = Signal()                           # the other half holds a word a token
        holding = Signal()
        j_hold = Signal(range(2 * nb + 1))
        cur_j = Signal(range(2 * nb + 1))
        op_now, more = Signal(), Signal()
        m.d.comb += [cur_j.eq(Mux(holding, j_hold, beat.gsel)),
                     op_now.eq(self.i.valid & has_prev & (cur_j < n_ops)),
                     more.eq(op_now & beat.word_end & (cur_j + 1 < n_ops))]
        row = Signal(range(2 * rows))
        m.d.comb += [pw.addr.eq(Cat(beat.tok[:tok_bits], half)),
                     pw.data.eq(Cat(Cat(lv[ch][b] for ch in range(C)).replicate(gpw)
                                    for b in range(nb))),
                     mw.addr.eq(pw.addr), mw.data.addr.eq(beat.addr),
                     mw.data.last_s.eq(beat.gsel)]
        with m.If(tile & take):
            m.d.comb += [pw.en.eq(Cat((Const(1, gpw) << beat.gsel)[:gpw] for _ in range(nb))),
                         mw.en.eq(1)]

        # Writes of the word before: issued (buffer read), then written a cycle later.
        tail = Signal()
        tail_tok, tail_j = Signal(range(rows + 1)), Signal(range(2 * nb + 1))
        tail_toks = Signal(range(rows + 1))
        issue, issue_j = Signal(), Signal(range(2 * nb + 1))
        issue_tok = Signal(range(rows))
        with m.If(tail):
            m.d.comb += [issue.eq(1), issue_j.eq(tail_j), issue_tok.eq(tail_tok)]
        with m.Elif(tile):
            m.d.comb += [issue.eq(op_now), issue_j.eq(cur_j), issue_tok.eq(beat.tok)]
        m.d.comb += [row.eq(Cat(issue_tok[:tok_bits], ~half)),
                     pr.addr.eq(row), mr.addr.eq(row), pr.en.eq(issue), mr.en.eq(issue)]
        w_v = Signal()
        w_j = Signal.like(issue_j)
        m.d.sync += [w_v.eq(issue), w_j.eq(issue_j)]
        w_p, w_copy = op_target(w_j)
        w_bit = Signal(range(nb))
        m.d.comb += w_bit.eq(self.bits_m1 - w_p)
        stored = data.View(meta, mr.data)

        # ------------------------------------------------ the store's write port
        with m.If(tile):
            m.d.comb += [self.act_waddr.eq(plane_addr(stored.addr, w_p, w_copy)),
                         self.act_wdata.eq(pr.data.word_select(w_bit, L)),
                         self.act_wen.eq(Mux(w_v, (Const(2, gpw + 1) << stored.last_s) - 1, 0)),
                         self.i.ready.eq(~tail & ~more)]
        with m.Else():
            m.d.comb += [self.act_waddr.eq(plane_addr(beat.addr, tm_p, tm_copy)),
                         self.act_wdata.eq(Cat(lv[ch].bit_select(tm_bit, 1)
                                               for ch in range(C)).replicate(gpw)),
                         self.act_wen.eq(Mux(self.i.valid, 1 << beat.gsel, 0)),
                         self.i.ready.eq(tm_last)]

        # ------------------------------------------------ state
        taken = Signal(32)
        with m.If(take):
            m.d.sync += taken.eq(taken + 1)
        with m.If(~tile & self.i.valid):
            m.d.sync += j_tm.eq(Mux(tm_last, 0, j_tm + 1))
            with m.If(tm_last):
                m.d.sync += self.written.eq(self.written + 1)
        with m.If(tile & self.i.valid & more):
            m.d.sync += [holding.eq(1), j_hold.eq(cur_j + 1)]
        with m.If(tile & take):
            m.d.sync += holding.eq(0)
            # A column (every token's word) ends with the last token's word_end beat; the
            # pass's last beat ends the last column, whose words the tail writes.
            with m.If(beat.pass_end):
                m.d.sync += [tail.eq(1), tail_tok.eq(0), tail_j.eq(0), tail_toks.eq(beat.tok + 1),
                             half.eq(~half), has_prev.eq(0)]
            with m.Elif(beat.col_end):
                m.d.sync += [half.eq(~half), has_prev.eq(1)]
        tail_done = Signal()                          # the tail's last write is this cycle
        m.d.sync += tail_done.eq(0)
        with m.If(tail):
            with m.If(tail_j == n_ops - 1):
                m.d.sync += [tail_j.eq(0), tail_tok.eq(tail_tok + 1)]
                with m.If(tail_tok + 1 == tail_toks):
                    m.d.sync += [tail.eq(0), tail_done.eq(1)]
            with m.Else():
                m.d.sync += tail_j.eq(tail_j + 1)
        with m.If(tail_done):
            m.d.sync += self.written.eq(taken)
        with m.If(self.setup):
            m.d.sync += [tile.eq(self.tile_major), plane_words.eq(self.plane_words),
                         copy_words.eq(self.copy_words), self.written.eq(0), taken.eq(0),
                         j_tm.eq(0), holding.eq(0), has_prev.eq(0), tail.eq(0)]
        return m
