"""The layer engine's steps 3-5: the tokens' Kb|Vb rows into the KV cache, then each token's
query, its Cb row written into the activation store.

``start`` (one cycle) begins with ``T`` tokens (``t``, taken then) whose ``Qb|Kb|Vb`` rows
(``3 D`` bits, ``3 D / L`` words each) the packer wrote from the ``qkv`` region on. First
every token's ``Kb|Vb`` (``2 D / L`` words, read one a cycle) goes to the attention unit on
``kv``. Then a query reader fetches each token's ``Qb`` row and offers it on ``q`` with its position
(``len0``, the slot's length before the command, plus its index), while the answers on ``c``
are taken and each ``Cb`` row written, ``L`` bits a cycle, into the ``cb`` region (``cb_w*``;
the next query's fetch and scan overlap the write). ``done`` is high the cycle the last Cb
word is written; ``fault`` the cycle an answer reports an error (the steps stop there).

The activation store's read port (``act_raddr``, ``act_ren``; ``act_rdata`` ``act_latency``
cycles later: 1 from the store's port, 2 through a register behind it, which costs a cycle a
row) is this block's while it runs.

Multi-bit activations (``LayerConfig.max_bits`` > 1; ``bits_m1`` is the command's A - 1): a
token's row is A planes of ``Qb|Kb|Vb`` (top plane first, ``3 D / L`` words each), so the reads
take A runs a row; the planes reach the attention unit with plane ``i`` holding bit ``i``. Each
answer's context sums leave on ``ctx``, ``cols`` channels a beat (``D / cols`` beats, token
after token), for the layer engine's multi-threshold unit; there is no ``cb_w*`` then.
"""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from ...host.layer_layout import act_regions
from .attention import c_layout, context_shape, kv_layout, q_layout

__all__ = ["AttentionSteps"]


class AttentionSteps(wiring.Component):
    """Members
    -------
    start : In(1);  t : In(range(max_t + 1));  len0 : In(range(kv_capacity + 1))
    done : Out(1);  fault : Out(1)
    kv : Out(stream.Signature(kv_layout));  q : Out(stream.Signature(q_layout))
    c : In(stream.Signature(c_layout))
    act_raddr : Out(range(act_words));  act_ren : Out(1);  act_rdata : In(lanes)
    cb_waddr : Out(range(act_words));  cb_wdata : Out(lanes);  cb_wen : Out(1)  (one bit)
    bits_m1 : In(range(max_bits));  ctx : Out(stream.Signature(ArrayLayout(ctx, cols)))
    (multi-bit)
    """

    def __init__(self, dev: DeviceConfig, *, act_latency: int = 1):
        check_device(dev, layer_for="AttentionSteps")
        if act_latency not in (1, 2):
            raise ValueError(f"act_latency must be 1 or 2 (cycles from act_ren to act_rdata), "
                             f"not {act_latency!r}")
        self._dev, self._act_latency = dev, act_latency
        c, ly = dev.core, dev.layer
        nb, d, cap = ly.max_bits, ly.d_model, ly.kv_capacity
        ports = {
            "start": In(1), "t": In(range(c.max_t + 1)), "len0": In(range(cap + 1)),
            "done": Out(1), "fault": Out(1),
            "kv": Out(stream.Signature(kv_layout(d, nb))),
            "q": Out(stream.Signature(q_layout(d, cap, nb))),
            "c": In(stream.Signature(c_layout(d, cap, nb))),
            "act_raddr": Out(range(dev.act_words)), "act_ren": Out(1),
            "act_rdata": In(c.lanes),
        }
        if nb > 1:
            ports["bits_m1"] = In(range(nb))
            ports["ctx"] = Out(stream.Signature(data.ArrayLayout(context_shape(cap, nb),
                                                                 c.cols)))
        else:
            ports.update({"cb_waddr": Out(range(dev.act_words)), "cb_wdata": Out(c.lanes),
                          "cb_wen": Out(1)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        dev, c, ly = self._dev, self._dev.core, self._dev.layer
        L, D, C = c.lanes, ly.d_model, c.cols
        nb = ly.max_bits
        Dw, Dc = D // L, D // C
        reg = act_regions(dev)
        t_m1 = Signal(range(c.max_t + 1))         # T - 1, taken at ``start`` (timing)
        i = Signal(range(c.max_t + 1))            # token index
        qpos = Signal(range(ly.kv_capacity))      # len0 + i in QUERY, a register (timing)
        row = Signal(2 * D * nb)                  # words written where ``rd_dst`` says
        rd_v = Signal()
        rd_dst = Signal(range(2 * Dw * nb))
        top = dev.act_words + 3 * Dw * nb * (c.max_t + 1) + 1
        rd_addr = Signal(range(top))
        row_addr = Signal(range(top))
        plane_addr = Signal(range(top))           # row_addr + plane * 3 Dw
        wcount = Signal(range(2 * Dw + 1))
        plane = Signal(range(nb))
        a_m1 = self.bits_m1 if nb > 1 else 0
        # A row's words, ``A * 3 Dw``: a table of constants (timing: a multiplier here set the
        # 85F's Fmax, from the engine's ``bits_m1`` through a DSP block into the read address).
        row_stride = Signal(range(3 * Dw * nb + 1))
        m.d.comb += row_stride.eq(Array([(b + 1) * 3 * Dw for b in range(nb)])[a_m1]
                                  if nb > 1 else 3 * Dw)
        slot = Signal(range(nb))                  # the unit's plane: bit A - 1 - plane
        m.d.comb += slot.eq(a_m1 - plane)
        dst = Signal(range(2 * Dw * nb))
        m.d.comb += self.act_raddr.eq(rd_addr)
        m.d.sync += rd_v.eq(self.act_ren)
        with m.If(self.act_ren):
            m.d.sync += rd_dst.eq(dst)
        wr_v, wr_dst = rd_v, rd_dst                 # where the word arriving now goes
        if self._act_latency == 2:
            wr_v, wr_dst = Signal(), Signal.like(rd_dst)
            m.d.sync += [wr_v.eq(rd_v), wr_dst.eq(rd_dst)]
        with m.If(wr_v):
            m.d.sync += row.word_select(wr_dst, L).eq(self.act_rdata)
        # The states after a row's last read wait for its last word.
        waits = self._act_latency
        cb_addr = Signal(range(dev.act_words + Dw + 1))
        q_start, in_query, w_busy = Signal(), Signal(), Signal()
        wi = Signal(range(c.max_t + 1))
        wcount2 = Signal(range(max(Dw, Dc) + 1))
        if nb == 1:
            m.d.comb += self.cb_waddr.eq(cb_addr)

        def next_plane(state, skip):
            """At a plane's last read: on to the row's next plane (its words from ``skip``)."""
            if nb > 1:
                with m.If(plane != a_m1):
                    m.d.sync += [plane.eq(plane + 1), wcount.eq(0),
                                 plane_addr.eq(plane_addr + 3 * Dw),
                                 rd_addr.eq(plane_addr + 3 * Dw + skip)]
                    m.next = state

        with m.FSM(name="steps"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [t_m1.eq(self.t - 1), i.eq(0), row_addr.eq(reg["qkv"]),
                                 plane_addr.eq(reg["qkv"]),
                                 rd_addr.eq(reg["qkv"] + Dw), wcount.eq(0), plane.eq(0)]
                    m.next = "KV_READ"
            # Append every token's Kb|Vb (its planes' runs of 2 Dw words), then query every
            # token.
            with m.State("KV_READ"):
                m.d.comb += [self.act_ren.eq(1),
                             dst.eq(slot * Dw + wcount +
                                    (wcount >= Dw) * ((nb - 1) * Dw))]
                m.d.sync += [rd_addr.eq(rd_addr + 1), wcount.eq(wcount + 1)]
                with m.If(wcount == 2 * Dw - 1):
                    m.next = "KV_LAST0"
                    next_plane("KV_READ", Dw)
            for w in range(waits):
                with m.State(f"KV_LAST{w}"):
                    m.next = f"KV_LAST{w + 1}" if w + 1 < waits else "KV_PUSH"
            with m.State("KV_PUSH"):
                m.d.comb += [self.kv.valid.eq(1), self.kv.payload.k.eq(row[:D * nb]),
                             self.kv.payload.v.eq(row[D * nb:])]
                with m.If(self.kv.ready):
                    nxt = row_addr + row_stride
                    m.d.sync += [i.eq(i + 1), row_addr.eq(nxt), plane_addr.eq(nxt),
                                 rd_addr.eq(nxt + Dw), wcount.eq(0), plane.eq(0)]
                    m.next = "KV_READ"
                    with m.If(i == t_m1):
                        m.d.sync += [i.eq(0), row_addr.eq(reg["qkv"]), rd_addr.eq(reg["qkv"]),
                                     plane_addr.eq(reg["qkv"]),
                                     cb_addr.eq(reg["cb"]), wi.eq(0), w_busy.eq(0),
                                     wcount2.eq(0)]
                        m.d.sync += qpos.eq(self.len0)
                        m.d.comb += q_start.eq(1)
                        m.next = "QUERY"
            with m.State("QUERY"):
                # The query reader (below) fetches and pushes Qb rows while the attention unit
                # scans; here each answer is taken and its Cb row written (its context sums
                # streamed, with multi-bit activations), overlapping the next query's fetch.
                m.d.comb += in_query.eq(1)
                if nb == 1:
                    self._cb_rows(m, cb_addr, w_busy, wi, wcount2, t_m1)
                else:
                    self._ctx_beats(m, wi, wcount2, t_m1)

        # The query reader: token i's Qb planes (Dw words each) into ``row``, then pushed with
        # its position; it stops with the QUERY state.
        with m.FSM(name="qreader"):
            with m.State("IDLE"):
                with m.If(q_start):
                    m.d.sync += [wcount.eq(0), plane.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.act_ren.eq(1), dst.eq(slot * Dw + wcount)]
                m.d.sync += [rd_addr.eq(rd_addr + 1), wcount.eq(wcount + 1)]
                with m.If(wcount == Dw - 1):
                    m.next = "LAST0"
                    next_plane("READ", 0)
                with m.If(~in_query):
                    m.next = "IDLE"
            for w in range(waits):
                with m.State(f"LAST{w}"):
                    m.next = f"LAST{w + 1}" if w + 1 < waits else "PUSH"
                    with m.If(~in_query):
                        m.next = "IDLE"
            with m.State("PUSH"):
                m.d.comb += [self.q.valid.eq(1), self.q.payload.q.eq(row[:D * nb]),
                             self.q.payload.pos.eq(qpos)]
                with m.If(self.q.ready):
                    nxt = row_addr + row_stride
                    m.d.sync += [i.eq(i + 1), qpos.eq(qpos + 1), wcount.eq(0), plane.eq(0),
                                 row_addr.eq(nxt), plane_addr.eq(nxt), rd_addr.eq(nxt)]
                    m.next = "READ"
                    with m.If(i == t_m1):
                        m.next = "IDLE"
                with m.If(~in_query):
                    m.next = "IDLE"
        return m

    def _cb_rows(self, m, cb_addr, w_busy, wi, wcount2, t_m1):
        """One bit: take each answer and write its Cb row, a word a cycle."""
        L, Dw = self._dev.core.lanes, self._dev.layer.d_model // self._dev.core.lanes
        cbits = Signal(self._dev.layer.d_model)
        with m.If(w_busy):
            m.d.comb += [self.cb_wen.eq(1), self.cb_wdata.eq(cbits.word_select(wcount2, L))]
            m.d.sync += [cb_addr.eq(cb_addr + 1), wcount2.eq(wcount2 + 1)]
            with m.If(wcount2 == Dw - 1):
                m.d.sync += [w_busy.eq(0), wi.eq(wi + 1)]
                with m.If(wi == t_m1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        with m.Else():
            m.d.comb += self.c.ready.eq(1)
            with m.If(self.c.valid):
                m.d.sync += [cbits.eq(self.c.payload.bits), wcount2.eq(0), w_busy.eq(1)]
                with m.If(self.c.payload.error):
                    m.d.comb += self.fault.eq(1)
                    m.next = "IDLE"

    def _ctx_beats(self, m, wi, wcount2, t_m1):
        """Multi-bit: stream each answer's sums, ``cols`` a beat; the answer is taken with its
        last beat."""
        C, D = self._dev.core.cols, self._dev.layer.d_model
        Dc = D // C
        ints = self.c.payload.ints
        groups = Array(Signal.like(self.ctx.payload, name=f"group{g}") for g in range(Dc))
        for g in range(Dc):
            for ch in range(C):
                m.d.comb += groups[g][ch].eq(ints[g * C + ch])
        with m.If(self.c.valid):
            with m.If(self.c.payload.error):
                m.d.comb += [self.c.ready.eq(1), self.fault.eq(1)]
                m.next = "IDLE"
            with m.Else():
                m.d.comb += [self.ctx.valid.eq(1), self.ctx.payload.eq(groups[wcount2])]
                with m.If(self.ctx.ready):
                    m.d.sync += wcount2.eq(wcount2 + 1)
                    with m.If(wcount2 == Dc - 1):
                        m.d.comb += self.c.ready.eq(1)
                        m.d.sync += [wcount2.eq(0), wi.eq(wi + 1)]
                        with m.If(wi == t_m1):
                            m.d.comb += self.done.eq(1)
                            m.next = "IDLE"
