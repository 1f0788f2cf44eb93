"""The layer engine's multi-threshold unit: integers in, A-bit levels out (the numerics' ``MT``).

Each beat on ``i`` carries ``cols`` signed integers (a product's results, residual values or
context sums) of one token and one group of ``cols`` channels. The unit answers, per channel,
the level ``MT(y, t) = #{j < L : y >= t_j}`` with the channel's ``L = 2^A - 1`` thresholds read
from the parameter store (``onebit.host.layer_layout``: word ``th_base + g G + j`` holds
threshold ``j`` of group ``g``, ``G = mt_group_words``), ``2 R`` a cycle: each of its two read
ports reads a run of ``R`` words (``param_read_words``, ``onebit.hdl.lib.run_read_store``:
``par_rdata<i>`` holds words ``a`` to ``a + R - 1``; ``th_base`` a multiple of ``R``, as ``G``
is, so every read starts a run), so a beat takes ``ceil(L / 2R)`` cycles (``R`` = 4 from
``max_bits`` 3 on: one cycle at A <= 3, two at A = 4); channels from ``n`` on answer 0. The
last group's thresholds stay in registers, so a beat of the same group as the one before takes
one cycle (a product's ``period`` tokens, or a residual pass's, share each group).

``setup`` (one cycle) starts a pass with ``config``. Beats come in one of two orders, and the
unit numbers them itself: ``tile_major`` (a product's results: the ``period`` tokens of a
group, then the next group) or token-major (a row's ``period`` groups, then the next token).
Each answer on ``o`` carries where its levels go in the activation store: ``addr`` (``region``
plus the token's row, ``row_stride`` words a token, plus the group's word), ``gsel`` (the
group within the word) and, for a tile-major pass, the token and the ends of words and of the
pass (``levels_layout``); ``onebit.hdl.layer.level_packer`` writes the planes.

Streams follow ``lib.stream``: ``i.ready`` is high while the unit is empty or issuing a beat's
last reads, and is a function of registers alone; answers wait in a ``OUT_DEPTH``-entry FIFO in
front of ``o``, and a beat's last reads issue only while it has room for every answer in flight
(a count kept in a register, so ``o.ready`` reaches no logic in the same cycle). Latency: five
cycles from the last reads' issue to ``o.valid`` (the thresholds pass a register between the
parameter store and the comparisons, and the comparisons one between them and the count).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count, check_device
from ...host.device_config import PARAM_BITS, DeviceConfig
from ...host.layer_layout import mt_group_words, mt_levels, param_read_words

__all__ = ["MultiThreshold", "mt_config_layout", "levels_layout", "OUT_DEPTH"]

#: Answers the output FIFO holds.
OUT_DEPTH = 5


def mt_config_layout(dev: DeviceConfig) -> data.StructLayout:
    """A pass's ``config``."""
    c, ly = dev.core, dev.layer
    top = max(c.max_t, c.max_n, ly.d_model) + 1
    return data.StructLayout({
        "tile_major": 1, "period": range(top), "th_base": range(ly.param_words),
        "region": range(dev.act_words), "row_stride": range(dev.act_words + 1),
        "n": range(max(c.max_n, ly.d_model) + 1), "bits_m1": range(ly.max_bits),
    })


def levels_layout(dev: DeviceConfig) -> data.StructLayout:
    """An answer: ``cols`` levels of ``max_bits`` bits, their word and group; in a tile-major
    pass also the token (``tok``), whether the group is its word's last (``word_end``) and
    whether the beat ends its column of words (the last token's ``word_end``, ``col_end``) and
    whether it is the pass's last (``pass_end``)."""
    c, ly = dev.core, dev.layer
    return data.StructLayout({
        "levels": data.ArrayLayout(ly.max_bits, c.cols),
        "addr": range(dev.act_words), "gsel": range(c.lanes // c.cols),
        "tok": range(max(c.max_t, c.max_n, ly.d_model) + 1), "word_end": 1, "col_end": 1,
        "pass_end": 1,
    })


class MultiThreshold(wiring.Component):
    """Members
    -------
    setup : In(1);  config : In(mt_config_layout(dev))
    i : In(stream.Signature(ArrayLayout(signed(width), cols)))
    o : Out(stream.Signature(levels_layout(dev)))
    par_raddr0, par_ren0, par_raddr1, par_ren1 : Out;  par_rdata0, par_rdata1 : In(R words)
    """

    def __init__(self, dev: DeviceConfig, *, width: int):
        check_device(dev, layer_for="MultiThreshold")
        check_count("MultiThreshold input width", width)
        if width > PARAM_BITS:
            raise ValueError(f"MultiThreshold input width must be at most PARAM_BITS "
                             f"({PARAM_BITS}): its thresholds are clamped into that field, "
                             f"not {width!r}")
        self._dev, self._width = dev, width
        c, ly = dev.core, dev.layer
        super().__init__({
            "setup": In(1), "config": In(mt_config_layout(dev)),
            "i": In(stream.Signature(data.ArrayLayout(signed(width), c.cols))),
            "o": Out(stream.Signature(levels_layout(dev))),
            "par_raddr0": Out(range(ly.param_words)), "par_ren0": Out(1),
            "par_rdata0": In(param_read_words(dev) * PARAM_BITS * c.cols),
            "par_raddr1": Out(range(ly.param_words)), "par_ren1": Out(1),
            "par_rdata1": In(param_read_words(dev) * PARAM_BITS * c.cols),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c, ly = self._dev, self._dev.core, self._dev.layer
        C, lm, G = c.cols, mt_levels(dev), mt_group_words(dev)
        gpw = c.lanes // c.cols
        cfg = Signal(mt_config_layout(dev))
        with m.If(self.setup):
            m.d.sync += cfg.eq(self.config)
        lv = Signal(5)                                  # L = 2^A - 1 of this pass
        m.d.comb += lv.eq((1 << (cfg.bits_m1 + 1)) - 1)
        R = param_read_words(dev)                       # words a port reads a cycle
        per = 2 * R                                     # thresholds read a cycle
        per_log = per.bit_length() - 1
        last_k = Signal(4)                              # the last reads: (L - 1) / 2R
        m.d.comb += last_k.eq((lv - 1) >> per_log)

        # Numbering of the beats taken (the meta of the next beat to arrive).
        k = Signal(range(max(c.max_t, c.max_n, ly.d_model) + 1))
        gaddr = Signal(range(ly.param_words + G + 1))
        rowb = Signal(range(dev.act_words + 1))
        gword = Signal(range(dev.act_words + 1))
        gsel = Signal(range(gpw))
        chb = Signal(range(max(c.max_n, ly.d_model) + C + 1))
        meta = data.StructLayout({"gaddr": gaddr.shape(), "addr": range(dev.act_words),
                                  "gsel": range(gpw), "chb": chb.shape(), "tok": k.shape(),
                                  "word_end": 1, "col_end": 1, "pass_end": 1})

        def next_group():
            return [gaddr.eq(gaddr + G), chb.eq(chb + C),
                    gsel.eq(gsel + 1 if gpw > 1 else 0)] + \
                ([gword.eq(gword + (gsel == gpw - 1))] if gpw > 1 else [gword.eq(gword + 1)])

        take = Signal()
        with m.If(take):
            with m.If(k == cfg.period - 1):
                m.d.sync += k.eq(0)
                with m.If(cfg.tile_major):
                    m.d.sync += [rowb.eq(0)] + next_group()
                with m.Else():
                    m.d.sync += [rowb.eq(rowb + cfg.row_stride), gaddr.eq(0), chb.eq(0),
                                 gsel.eq(0), gword.eq(0)]
            with m.Else():
                m.d.sync += k.eq(k + 1)
                with m.If(cfg.tile_major):
                    m.d.sync += rowb.eq(rowb + cfg.row_stride)
                with m.Else():
                    m.d.sync += next_group()
        with m.If(self.setup):
            m.d.sync += [k.eq(0), gaddr.eq(0), rowb.eq(0), gword.eq(0), gsel.eq(0), chb.eq(0)]

        # Issue stage: the beat held while its thresholds are read, 2R a cycle.
        busy = Signal()
        y = Signal(data.ArrayLayout(signed(self._width), C))
        y_meta = Signal(meta)
        kk = Signal(4)
        last_reads = Signal()
        issue = Signal()
        out_free = Signal(init=1)
        m.submodules.out = out = fifo.SyncFIFOBuffered(width=levels_layout(dev).size,
                                                      depth=OUT_DEPTH)
        # The thresholds of the group read last (``tag``), if complete (``cached``).
        reads = -(-lm // per)                           # cycles of reads a beat at most
        cache = [Signal(data.ArrayLayout(signed(PARAM_BITS), C), name=f"cache{j}")
                 for j in range(per * reads)]
        tag = Signal.like(gaddr)
        cached = Signal()
        # Whether the beat held finds its group's thresholds cached: decided when it is taken,
        # against the cache as this cycle's reads leave it (a register, so that ``i.ready``
        # does not wait on the compare).
        hit = Signal()
        tag_nx, cached_nx = Signal.like(gaddr), Signal()
        m.d.comb += [tag_nx.eq(tag), cached_nx.eq(cached)]
        # ``last_reads`` and ``out_free`` are registers, set from the state they follow, so
        # that ``i.ready`` is one LUT of registers (timing: the FIFO's level and the sum into
        # the compare ran on into the sources' skid registers across the chip).
        at_last = Signal()                              # kk == last_k, for the kk held
        occupied = Signal(range(OUT_DEPTH + 1))         # answers issued, not yet taken on o
        m.d.comb += [last_reads.eq(hit | at_last),
                     issue.eq(busy & (~last_reads | out_free))]
        occupied_nx = Signal.like(occupied)
        m.d.comb += occupied_nx.eq(occupied + (issue & last_reads)
                                   - (self.o.valid & self.o.ready))
        m.d.sync += [occupied.eq(occupied_nx), out_free.eq(occupied_nx < OUT_DEPTH)]
        m.d.comb += [self.i.ready.eq(~busy | (issue & last_reads)),
                     take.eq(self.i.valid & self.i.ready)]
        # The read addresses, ``th_base + gaddr + kk * 2R`` (and ``+ R``), in registers that
        # step with ``kk`` (timing: the sum ran into the parameter store's block RAMs).
        addr0, addr1 = (Signal(range(ly.param_words + 2 * G + per), name=f"addr{i}")
                        for i in range(2))
        m.d.comb += [self.par_raddr0.eq(addr0), self.par_raddr1.eq(addr1),
                     self.par_ren0.eq(issue & ~hit), self.par_ren1.eq(issue & ~hit)]
        with m.If(issue):
            m.d.sync += [kk.eq(kk + 1), addr0.eq(addr0 + per), addr1.eq(addr1 + per),
                         at_last.eq(kk + 1 == last_k)]
            with m.If(~hit):
                m.d.comb += cached_nx.eq(0)
                with m.If(last_reads):
                    m.d.comb += [cached_nx.eq(1), tag_nx.eq(y_meta.gaddr)]
            with m.If(last_reads):
                m.d.sync += [busy.eq(0), kk.eq(0)]
        with m.If(self.setup):
            m.d.comb += cached_nx.eq(0)
        m.d.sync += [cached.eq(cached_nx), tag.eq(tag_nx)]
        row_end, word_end = Signal(), Signal()
        m.d.comb += [row_end.eq(chb + C >= cfg.n), word_end.eq((gsel == gpw - 1) | row_end)]
        with m.If(take):
            m.d.sync += [busy.eq(1), kk.eq(0), at_last.eq(last_k == 0), y.eq(self.i.payload),
                         addr0.eq(cfg.th_base + gaddr), addr1.eq(cfg.th_base + gaddr + R),
                         hit.eq(cached_nx & (tag_nx == gaddr)),
                         y_meta.gaddr.eq(gaddr), y_meta.addr.eq(cfg.region + rowb + gword),
                         y_meta.gsel.eq(gsel), y_meta.chb.eq(chb), y_meta.tok.eq(k),
                         y_meta.word_end.eq(word_end),
                         y_meta.col_end.eq(cfg.tile_major & (k == cfg.period - 1) & word_end),
                         y_meta.pass_end.eq(cfg.tile_major & (k == cfg.period - 1) & row_end)]

        # Read stage: the thresholds arrive the cycle after their reads and are registered
        # (the parameter store's read data reaches no logic); the compare stage follows.
        stage = data.StructLayout({"first": 1, "last": 1, "hit": 1,
                                   "kk": kk.shape(), "lv": lv.shape(), "y": y.shape(),
                                   "meta": meta})
        r_valid, r = Signal(), Signal(stage)
        m.d.sync += r_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [r.first.eq(kk == 0), r.last.eq(last_reads), r.hit.eq(hit), r.kk.eq(kk),
                         r.lv.eq(lv), r.y.eq(y), r.meta.eq(y_meta)]
        c_valid, c = Signal(), Signal(stage)
        t = [Signal(data.ArrayLayout(signed(PARAM_BITS), C), name=f"t{i}") for i in range(per)]
        wbits = PARAM_BITS * C
        m.d.sync += c_valid.eq(r_valid)
        with m.If(r_valid):
            m.d.sync += [c.eq(r)] + [
                t[i].eq(getattr(self, f"par_rdata{i // R}")[(i % R) * wbits:][:wbits])
                for i in range(per)]
        c_hit, c_kk, c_lv, c_y = c.hit, c.kk, c.lv, c.y
        with m.If(c_valid & ~c_hit):
            for q in range(reads):
                with m.If(c_kk == q):
                    m.d.sync += [cache[per * q + i].eq(t[i]) for i in range(per)]
        # Which of the words read hold one of this pass's L thresholds.
        in_pass = [Signal(name=f"in_pass{i}") for i in range(per)]
        m.d.comb += [in_pass[i].eq((c_kk << per_log) + i < c_lv) for i in range(per)]
        # Compare stage: each channel's comparisons, registered; the count stage adds them.
        d_valid, d = Signal(), Signal(stage)
        ge_cache = [Signal(lm, name=f"ge_cache{ch}") for ch in range(C)]
        ge_read = [Signal(per, name=f"ge_read{ch}") for ch in range(C)]
        m.d.sync += d_valid.eq(c_valid)
        with m.If(c_valid):
            m.d.sync += d.eq(c)
            for ch in range(C):
                m.d.sync += [ge_cache[ch][j].eq((j < c_lv) & (c_y[ch] >= cache[j][ch]))
                             for j in range(lm)]
                m.d.sync += [ge_read[ch][i].eq(in_pass[i] & (c_y[ch] >= t[i][ch]))
                             for i in range(per)]
        count = [Signal(4, name=f"count{ch}") for ch in range(C)]
        total = [Signal(5, name=f"total{ch}") for ch in range(C)]
        for ch in range(C):
            from_cache = sum(ge_cache[ch][j] for j in range(lm))
            read = sum(ge_read[ch][i] for i in range(per))
            m.d.comb += total[ch].eq(Mux(d.hit, from_cache,
                                         Mux(d.first, 0, count[ch]) + read))
        answer = Signal(levels_layout(dev))
        m.d.comb += [answer.addr.eq(d.meta.addr), answer.gsel.eq(d.meta.gsel),
                     answer.tok.eq(d.meta.tok), answer.word_end.eq(d.meta.word_end),
                     answer.col_end.eq(d.meta.col_end), answer.pass_end.eq(d.meta.pass_end),
                     out.w_data.eq(answer), out.w_en.eq(d_valid & d.last),
                     self.o.valid.eq(out.r_rdy), self.o.payload.eq(out.r_data),
                     out.r_en.eq(self.o.ready)]
        for ch in range(C):
            m.d.comb += answer.levels[ch].eq(Mux(d.meta.chb + ch < cfg.n, total[ch], 0))
        with m.If(d_valid):
            m.d.sync += [count[ch].eq(total[ch]) for ch in range(C)]
        return m
