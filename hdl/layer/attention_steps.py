"""The layer engine's steps 3-5: the tokens' Kb|Vb rows into the KV cache, then each token's
query, its Cb row written into the activation store.

``start`` (one cycle) begins with ``T`` tokens (``t``) whose ``Qb|Kb|Vb`` rows (``3 D`` bits,
``3 D / L`` words each) the packer wrote from the ``qkv`` region on. First every token's
``Kb|Vb`` (``2 D / L`` words, read one a cycle) goes to the attention unit on ``kv``. Then a
query reader fetches each token's ``Qb`` row and offers it on ``q`` with its position
(``len0``, the slot's length before the command, plus its index), while the answers on ``c``
are taken and each ``Cb`` row written, ``L`` bits a cycle, into the ``cb`` region (``cb_w*``;
the next query's fetch and scan overlap the write). ``done`` is high the cycle the last Cb
word is written; ``fault`` the cycle an answer reports an error (the steps stop there).

The activation store's read port (``act_raddr``, ``act_ren``; latency 1) is this block's
while it runs.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from ...host.layer_layout import act_regions
from .attention import c_layout, kv_layout, q_layout

__all__ = ["AttentionSteps"]


class AttentionSteps(wiring.Component):
    """Members
    -------
    start : In(1);  t : In(range(max_t + 1));  len0 : In(range(kv_capacity + 1))
    done : Out(1);  fault : Out(1)
    kv : Out(stream.Signature(kv_layout));  q : Out(stream.Signature(q_layout))
    c : In(stream.Signature(c_layout))
    act_raddr : Out(range(act_words));  act_ren : Out(1);  act_rdata : In(lanes)
    cb_waddr : Out(range(act_words));  cb_wdata : Out(lanes);  cb_wen : Out(1)
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev, layer_for="AttentionSteps")
        self._dev = dev
        c, ly = dev.core, dev.layer
        super().__init__({
            "start": In(1), "t": In(range(c.max_t + 1)), "len0": In(range(ly.kv_capacity + 1)),
            "done": Out(1), "fault": Out(1),
            "kv": Out(stream.Signature(kv_layout(ly.d_model))),
            "q": Out(stream.Signature(q_layout(ly.d_model, ly.kv_capacity))),
            "c": In(stream.Signature(c_layout(ly.d_model))),
            "act_raddr": Out(range(dev.act_words)), "act_ren": Out(1),
            "act_rdata": In(c.lanes),
            "cb_waddr": Out(range(dev.act_words)), "cb_wdata": Out(c.lanes), "cb_wen": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c, ly = self._dev, self._dev.core, self._dev.layer
        L, D = c.lanes, ly.d_model
        Dw = D // L
        reg = act_regions(dev)
        t = self.t
        i = Signal(range(c.max_t + 1))            # token index
        qpos = Signal(range(ly.kv_capacity))      # len0 + i in QUERY, a register (timing)
        row = Signal(2 * D)                       # act words shifted in at the top
        rd_v = Signal()
        rd_addr = Signal(range(dev.act_words + 3 * Dw + 1))
        row_addr = Signal(range(dev.act_words + 3 * Dw * c.max_t + 1))
        wcount = Signal(range(2 * Dw + 1))
        m.d.sync += rd_v.eq(self.act_ren)
        m.d.comb += self.act_raddr.eq(rd_addr)
        with m.If(rd_v):
            m.d.sync += row.eq(Cat(row[L:], self.act_rdata))
        cbits = Signal(D)
        cb_addr = Signal(range(dev.act_words + Dw + 1))
        q_start, in_query, w_busy = Signal(), Signal(), Signal()
        wi = Signal(range(c.max_t + 1))
        wcount2 = Signal(range(Dw + 1))
        m.d.comb += self.cb_waddr.eq(cb_addr)

        with m.FSM(name="steps"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [i.eq(0), row_addr.eq(reg["qkv"]),
                                 rd_addr.eq(reg["qkv"] + Dw), wcount.eq(0)]
                    m.next = "KV_READ"
            # Append every token's Kb|Vb, then query every token.
            with m.State("KV_READ"):
                m.d.comb += self.act_ren.eq(1)
                m.d.sync += [rd_addr.eq(rd_addr + 1), wcount.eq(wcount + 1)]
                with m.If(wcount == 2 * Dw - 1):
                    m.next = "KV_LAST"
            with m.State("KV_LAST"):
                m.next = "KV_PUSH"
            with m.State("KV_PUSH"):
                m.d.comb += [self.kv.valid.eq(1), self.kv.payload.k.eq(row[:D]),
                             self.kv.payload.v.eq(row[D:])]
                with m.If(self.kv.ready):
                    m.d.sync += [i.eq(i + 1), row_addr.eq(row_addr + 3 * Dw),
                                 rd_addr.eq(row_addr + 4 * Dw), wcount.eq(0)]
                    m.next = "KV_READ"
                    with m.If(i == t - 1):
                        m.d.sync += [i.eq(0), row_addr.eq(reg["qkv"]), rd_addr.eq(reg["qkv"]),
                                     cb_addr.eq(reg["cb"]), wi.eq(0), w_busy.eq(0)]
                        m.d.sync += qpos.eq(self.len0)
                        m.d.comb += q_start.eq(1)
                        m.next = "QUERY"
            with m.State("QUERY"):
                # The query reader (below) fetches and pushes Qb rows while the attention unit
                # scans; here each answer is taken and its Cb row written, overlapping the next
                # query's fetch and scan.
                m.d.comb += in_query.eq(1)
                with m.If(w_busy):
                    m.d.comb += [self.cb_wen.eq(1), self.cb_wdata.eq(cbits.word_select(wcount2, L))]
                    m.d.sync += [cb_addr.eq(cb_addr + 1), wcount2.eq(wcount2 + 1)]
                    with m.If(wcount2 == Dw - 1):
                        m.d.sync += [w_busy.eq(0), wi.eq(wi + 1)]
                        with m.If(wi == t - 1):
                            m.d.comb += self.done.eq(1)
                            m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.c.ready.eq(1)
                    with m.If(self.c.valid):
                        m.d.sync += [cbits.eq(self.c.payload.bits), wcount2.eq(0),
                                     w_busy.eq(1)]
                        with m.If(self.c.payload.error):
                            m.d.comb += self.fault.eq(1)
                            m.next = "IDLE"

        # The query reader: token i's Qb row (Dw words) into ``row``, then pushed with its
        # position; it stops with the QUERY state.
        with m.FSM(name="qreader"):
            with m.State("IDLE"):
                with m.If(q_start):
                    m.d.sync += wcount.eq(0)
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.act_ren.eq(1)
                m.d.sync += [rd_addr.eq(rd_addr + 1), wcount.eq(wcount + 1)]
                with m.If(wcount == Dw - 1):
                    m.next = "LAST"
                with m.If(~in_query):
                    m.next = "IDLE"
            with m.State("LAST"):
                m.next = "PUSH"
                with m.If(~in_query):
                    m.next = "IDLE"
            with m.State("PUSH"):
                m.d.comb += [self.q.valid.eq(1), self.q.payload.q.eq(row[D:]),
                             self.q.payload.pos.eq(qpos)]
                with m.If(self.q.ready):
                    m.d.sync += [i.eq(i + 1), qpos.eq(qpos + 1), wcount.eq(0),
                                 row_addr.eq(row_addr + 3 * Dw),
                                 rd_addr.eq(row_addr + 3 * Dw)]
                    m.next = "READ"
                    with m.If(i == t - 1):
                        m.next = "IDLE"
                with m.If(~in_query):
                    m.next = "IDLE"
        return m
