"""The layer engine: all of the spec's transformer layer (steps 1-8) out of the device's stores.

``start`` (one cycle) latches ``params`` (``layer_layout``: the fields of the LAYER command). The
engine checks every size and region (``status`` ``OUT_OF_RANGE``; ``CACHE_FULL`` if the tokens
do not fit the KV cache slot), then runs, for ``T`` token rows ``X`` in the residual store
(``onebit.host.layer_layout`` has every address):

1. binarise: ``Xb = X >= th_attn`` (residual unit with ``y = 0``) into the ``xb`` region;
2. one GEMM ``Xb . [Wq; Wk; Wv]^T >= [tq; tk; tv]`` whose bit tiles the packer writes as
   ``Qb|Kb|Vb`` rows (``qkv``);
3-5. the ``Kb``/``Vb`` rows appended to the slot's KV cache, then each token's ``Qb`` queried at
   its position (cache length before the command, plus its index); ``Cb`` rows into ``cb``;
6. GEMM ``Cb . Wo^T`` streamed into the residual unit: ``X1 = sat16(X + ((O * so) >> r))``
   written back in place, ``X1 >= th_ffn`` into ``x1b``;
7. GEMM ``X1b . W1^T >= t1`` packed into ``hb``;
8. GEMM ``Hb . W2^T`` into the residual unit: ``X2 = sat16(X1 + ((Y * s2) >> r))`` in place.

With ``LAYER_HEAD`` the engine binarises with ``th_out`` and runs ``Xb . Wout^T`` into the
result store instead (the LM head's logits). ``LAYER_FRESH`` empties the slot first.

``done`` pulses at the end with ``status`` (``onebit.host.protocol.Status``); ``cycles`` counts
the command's cycles and ``active`` the cycles the array computed (summed over its GEMMs);
``kv_length`` is the number of tokens the command's slot holds (after it, when ``done`` pulses),
which the host checks to notice a cache that a device reset emptied.

Ports: the GEMM runner (``run_*``; its ``result`` stream when ``stream`` is set); the activation
store's write port (one enable per ``cols`` bits) and read port; the residual store's ports; two
read ports of the parameter store. All memories have a read latency of one cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import Op
from ...host.device_config import PARAM_BITS, DeviceConfig
from ...host.layer_layout import PARAM_ROWS, act_regions, matrix_offsets, param_words_per_layer
from ...host.protocol import ARGUMENTS, LAYER_FRESH, LAYER_HEAD, Opcode, Status
from ..core.gemm_layouts import result_layout
from ..core.gemm_runner import run_layout
from ..core.gemv import Gemv, gemv_layout
from ..lib.register_slice import RegisterSlice
from .attention import AttentionUnit
from .packer import ResultPacker
from .residual import ResidualUnit

__all__ = ["LayerEngine", "layer_layout"]


def layer_layout() -> data.StructLayout:
    """The LAYER command's fields (``ARGUMENTS[Opcode.LAYER]`` without its tag)."""
    return data.StructLayout({name: 8 * size for name, size in ARGUMENTS[Opcode.LAYER]
                              if name != "tag"})


def _clamp(value, lo: int, hi: int):
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


class LayerEngine(wiring.Component):
    """Members
    -------
    start : In(1);  params : In(layer_layout());  clear_cache : In(1)
    done : Out(1);  status : Out(8);  busy : Out(1);  cycles, active : Out(32)
    kv_length : Out(16)  (tokens in the command's KV cache slot; final when ``done`` pulses)
    run_start : Out(1);  run_params : Out(run_layout(dev));  run_done, run_error : In(1)
    run_active : In(32);  run_result : In(stream.Signature(result_layout(core)))
    act_waddr, act_wdata, act_wen (lanes // cols);  act_raddr, act_ren, act_rdata
    res_raddr, res_ren, res_rdata, res_waddr, res_wdata, res_wen  (words of cols int16)
    par_raddr0, par_ren0, par_rdata0, par_raddr1, par_ren1, par_rdata1 (cols x PARAM_BITS)
    """

    def __init__(self, dev: DeviceConfig):
        if not isinstance(dev, DeviceConfig):
            raise TypeError(f"dev must be a DeviceConfig, not {dev!r}")
        if dev.layer is None:
            raise ValueError("LayerEngine needs a DeviceConfig with a layer (LayerConfig)")
        self._dev = dev
        c, ly = dev.core, dev.layer
        ports = {
            "start": In(1), "params": In(layer_layout()), "clear_cache": In(1),
            "done": Out(1), "status": Out(8), "busy": Out(1),
            "cycles": Out(32), "active": Out(32), "kv_length": Out(16),
            "run_start": Out(1), "run_params": Out(run_layout(dev)),
            "run_done": In(1), "run_error": In(1), "run_active": In(32),
            "run_result": In(stream.Signature(result_layout(c))),
            "act_waddr": Out(range(dev.act_words)), "act_wdata": Out(c.lanes),
            "act_wen": Out(c.lanes // c.cols),
            "act_raddr": Out(range(dev.act_words)), "act_ren": Out(1), "act_rdata": In(c.lanes),
            "res_raddr": Out(range(ly.res_words)), "res_ren": Out(1),
            "res_rdata": In(16 * c.cols),
            "res_waddr": Out(range(ly.res_words)), "res_wdata": Out(16 * c.cols),
            "res_wen": Out(1),
        }
        for i in range(2):
            ports.update({f"par_raddr{i}": Out(range(ly.param_words)), f"par_ren{i}": Out(1),
                          f"par_rdata{i}": In(PARAM_BITS * c.cols)})
        if dev.weight_banks > 1:
            ports.update({
                "w_laddr": Out(range(-(-dev.weight_words // dev.weight_banks))),
                "w_lren": Out(1), "w_ldata": In(c.lanes * dev.weight_banks),
                "th_laddr": Out(range(-(-dev.thresh_words // dev.thresh_banks))),
                "th_lren": Out(1), "th_ldata": In(c.threshold_width * c.cols),
            })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        dev, c, ly = self._dev, self._dev.core, self._dev.layer
        C, L = c.cols, c.lanes
        D, H, DH = ly.d_model, ly.heads, ly.head_dim
        Dw, Dc = D // L, D // C
        gpw = L // C                                 # C-bit groups per activation word
        reg = act_regions(dev)
        PW = param_words_per_layer(dev)
        off = {name: i * Dc for i, name in enumerate(PARAM_ROWS)}
        off["ta"] = len(PARAM_ROWS) * Dc
        n_ta = -(-H // C)
        cap = ly.kv_capacity

        m.submodules.residual = resu = ResidualUnit(width=C, y_width=c.result_width)
        m.submodules.packer = pk = ResultPacker(c, depth=dev.act_words)
        m.submodules.attention = att = AttentionUnit(heads=H, head_dim=DH, capacity=cap,
                                                     slots=ly.kv_slots)
        # CLEAR_CACHE reaches the attention unit a cycle later (timing: the command processor's
        # decision fanned out to the unit's enables; no command follows within a cycle).
        clear_q = Signal()
        m.d.sync += clear_q.eq(self.clear_cache)
        m.d.comb += att.clear.eq(clear_q)

        # Decode (T = 1) runs its products on the GEMV unit when the weight store is banked.
        P = dev.weight_banks
        banked = P > 1
        use_gemv = Signal()
        # The products' results reach the packer and the residual pass through a register
        # slice: without it, their ready (the sequencer's state, the packer's) ran through the
        # GEMV unit's stall into the weight store's line read (the ULX3S-85F's critical path).
        m.submodules.result_slice = rslice = RegisterSlice(result_layout(c))
        src = rslice.o
        mux = rslice.i
        if banked:
            m.submodules.gemv = gv = Gemv(dev)
            m.d.comb += [self.w_laddr.eq(gv.w_laddr), self.w_lren.eq(gv.w_lren),
                         gv.w_ldata.eq(self.w_ldata), self.th_laddr.eq(gv.th_laddr),
                         self.th_lren.eq(gv.th_lren), gv.th_ldata.eq(self.th_ldata),
                         gv.act_rdata.eq(self.act_rdata)]
            gq = Signal(gemv_layout(dev))
            m.d.comb += gv.params.eq(gq)
            # Only the unit that ``use_gemv`` chose runs, so both see the slice's ready as it
            # is (a register): ``use_gemv`` stays out of the GEMV unit's stall logic.
            m.d.comb += [gv.result.ready.eq(mux.ready), self.run_result.ready.eq(mux.ready)]
            with m.If(use_gemv):
                m.d.comb += [mux.valid.eq(gv.result.valid), mux.payload.eq(gv.result.payload)]
            with m.Else():
                m.d.comb += [mux.valid.eq(self.run_result.valid),
                             mux.payload.eq(self.run_result.payload)]
            with m.If(gv.w_lren):
                m.d.sync += self.active.eq(self.active + 1)
        else:
            wiring.connect(m, wiring.flipped(self.run_result), mux)

        def launch():
            """Start the product prepared by ``gemm``: on the GEMV unit or the runner."""
            if banked:
                return [self.run_start.eq(~use_gemv), gv.start.eq(use_gemv)]
            return [self.run_start.eq(1)]

        # ------------------------------------------------------------ command and its sizes
        p = Signal(layer_layout())
        head = p.flags[1]
        fresh = p.flags[0]
        slot = Signal(range(ly.kv_slots))
        m.d.comb += [att.slot.eq(slot), resu.shift.eq(p.shift[:4]),
                     self.kv_length.eq(att.length)]
        fw = Signal(range(c.max_chunks + 2))
        t_dw, t_dc, t_fw = (Signal(32, name=n) for n in ("t_dw", "t_dc", "t_fw"))
        f_dw, d_fw, n_dw, h_beats = (Signal(32, name=n) for n in ("f_dw", "d_fw", "n_dw",
                                                                   "h_beats"))
        len0 = Signal(range(cap + 1))
        bad, full = Signal(), Signal()
        pb = Signal(range(ly.param_words))
        w_o, w_1, w_2 = (Signal(range(dev.weight_words), name=n) for n in ("w_o", "w_1", "w_2"))
        i = Signal(range(c.max_t + 1))           # token index of the attention steps

        mo = matrix_offsets(dev, 0)
        o_wo, o_w1 = mo["Wo"], mo["W1"]

        def pad(words):
            return (words + P - 1) & ~(P - 1) if P > 1 else words

        # Counters.
        m.d.sync += [self.done.eq(0)]
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.run_done):
            m.d.sync += self.active.eq(self.active + self.run_active)

        # GEMM launch register: set in the state before a ``*_RUN`` state pulses run_start.
        rq = Signal(run_layout(dev))
        m.d.comb += self.run_params.eq(rq)

        def gemm(*, thr, n, k, act, act_count, w, w_count, th=0, th_count=0, to_stream=1):
            ops = [rq.op.eq(Op.XOR), rq.threshold.eq(thr), rq.stream.eq(to_stream),
                   rq.t.eq(p.t), rq.n.eq(n), rq.k.eq(k), rq.act_base.eq(act),
                   rq.act_count.eq(act_count), rq.weight_base.eq(w),
                   rq.weight_count.eq(w_count), rq.thresh_base.eq(th),
                   rq.thresh_count.eq(th_count)]
            if banked:
                ops += [gq.threshold.eq(thr), gq.n.eq(n), gq.k.eq(k), gq.act_base.eq(act),
                        gq.w_line.eq(w >> (P.bit_length() - 1)),
                        gq.th_line.eq(th >> (C.bit_length() - 1))]
            return ops

        # ------------------------------------------------------------ residual pass
        # Beats in the core's order (group of C channels outer, token inner); each beat reads
        # X (residual store), the scale and the threshold (parameter store), feeds the residual
        # unit a cycle later, and two cycles after that writes X1 back and its bits into the
        # activation store. ``rp_gen``: beats made here (binarise, y = 0); else the GEMM's.
        rp_gen, rp_write, rp_bits = Signal(), Signal(), Signal()
        rp_soff, rp_toff = Signal(range(PW + 1)), Signal(range(PW + 1))
        rp_region = Signal(range(dev.act_words + 1))
        rp_tok = Signal(range(c.max_t + 1))
        rp_grp = Signal(range(Dc + 1))
        rp_left = Signal(32)                       # beats still to come out of the unit
        ra, ra_col = Signal(range(ly.res_words + Dc + 1)), Signal(range(ly.res_words + Dc + 1))
        aa, aa_col = Signal(range(dev.act_words + Dw + 1)), Signal(range(dev.act_words + Dw + 1))
        gsel = Signal(range(gpw))
        fire = Signal()
        gen_left = Signal(32)

        def rp_setup(*, gen, write, bits, soff, toff, region):
            return [rp_gen.eq(gen), rp_write.eq(write), rp_bits.eq(bits), rp_soff.eq(soff),
                    rp_toff.eq(toff), rp_region.eq(region), rp_tok.eq(0), rp_grp.eq(0),
                    rp_left.eq(t_dc), gen_left.eq(t_dc), ra.eq(p.res_base),
                    ra_col.eq(p.res_base), aa.eq(region), aa_col.eq(region), gsel.eq(0)]

        m.d.comb += [self.res_raddr.eq(ra), self.res_ren.eq(fire),
                     self.par_raddr0.eq(pb + rp_soff + rp_grp), self.par_ren0.eq(fire),
                     self.par_raddr1.eq(pb + rp_toff + rp_grp), self.par_ren1.eq(fire)]
        with m.If(fire):
            with m.If(rp_tok == p.t - 1):
                nxt_aa = aa_col + (gsel == gpw - 1)
                m.d.sync += [rp_tok.eq(0), rp_grp.eq(rp_grp + 1), ra_col.eq(ra_col + 1),
                             ra.eq(ra_col + 1), aa_col.eq(nxt_aa), aa.eq(nxt_aa),
                             gsel.eq(gsel + 1 if gpw > 1 else 0)]
            with m.Else():
                m.d.sync += [rp_tok.eq(rp_tok + 1), ra.eq(ra + Dc), aa.eq(aa + Dw)]
        # Stage B: the residual unit's input.
        b_valid = Signal()
        b_y = Signal(data.ArrayLayout(signed(c.result_width), C))
        meta = data.StructLayout({"ra": range(ly.res_words + Dc + 1),
                                  "aa": range(dev.act_words + Dw + 1), "gsel": range(gpw)})
        b_meta, d1_meta, d2_meta = (Signal(meta, name=n) for n in ("b_meta", "d1_meta",
                                                                  "d2_meta"))
        m.d.sync += [b_valid.eq(fire), d1_meta.eq(b_meta), d2_meta.eq(d1_meta)]
        with m.If(fire):
            m.d.sync += [b_y.eq(Mux(rp_gen, 0, src.payload.ints)),
                         b_meta.ra.eq(ra), b_meta.aa.eq(aa), b_meta.gsel.eq(gsel)]
        x_in = data.View(data.ArrayLayout(signed(16), C), self.res_rdata)
        s_in = data.View(data.ArrayLayout(signed(PARAM_BITS), C), self.par_rdata0)
        t_in = data.View(data.ArrayLayout(signed(PARAM_BITS), C), self.par_rdata1)
        m.d.comb += [resu.i.valid.eq(b_valid), resu.o.ready.eq(1)]
        for ch in range(C):
            m.d.comb += [resu.i.payload.x[ch].eq(x_in[ch]), resu.i.payload.y[ch].eq(b_y[ch]),
                         resu.i.payload.s[ch].eq(Mux(rp_gen, 0, s_in[ch][:8].as_signed())),
                         resu.i.payload.t[ch].eq(t_in[ch])]
        # Output: X1 back in place, its bits into the activation store.
        m.d.comb += [self.res_waddr.eq(d2_meta.ra), self.res_wdata.eq(resu.o.payload.x),
                     self.res_wen.eq(resu.o.valid & rp_write)]
        with m.If(resu.o.valid):
            m.d.sync += rp_left.eq(rp_left - 1)

        # Activation store writes: the residual pass's bits, the packer's groups, or a Cb word.
        cb_wen = Signal()
        cb_addr = Signal(range(dev.act_words + Dw + 1))
        cb_word = Signal(L)
        packing = Signal()
        with m.If(resu.o.valid & rp_bits):
            m.d.comb += [self.act_waddr.eq(d2_meta.aa),
                         self.act_wdata.eq(resu.o.payload.bits.replicate(gpw)),
                         self.act_wen.eq(1 << d2_meta.gsel)]
        with m.Elif(packing):
            m.d.comb += [self.act_waddr.eq(pk.waddr), self.act_wdata.eq(pk.wdata),
                         self.act_wen.eq(pk.wen)]
        with m.Elif(cb_wen):
            m.d.comb += [self.act_waddr.eq(cb_addr), self.act_wdata.eq(cb_word),
                         self.act_wen.eq((1 << gpw) - 1)]

        # GEMM results: to the packer (``packing``) or the residual pass (``fire`` takes them).
        to_res = Signal()
        with m.If(packing):
            m.d.comb += [pk.i.valid.eq(src.valid), pk.i.payload.eq(src.payload),
                         src.ready.eq(pk.i.ready)]
        with m.Elif(to_res):
            m.d.comb += [src.ready.eq(1), fire.eq(src.valid)]

        # ------------------------------------------------------------ attention row moves
        row = Signal(2 * D)                       # act words shifted in at the top
        rd_v = Signal()
        rd_addr = Signal(range(dev.act_words + 3 * Dw + 1))
        row_addr = Signal(range(dev.act_words + 3 * Dw * c.max_t + 1))
        wcount = Signal(range(2 * Dw + 1))
        m.d.sync += rd_v.eq(self.act_ren)
        m.d.comb += self.act_raddr.eq(rd_addr)
        if banked:
            with m.If(gv.act_ren):
                m.d.comb += [self.act_raddr.eq(gv.act_raddr), self.act_ren.eq(1)]
        with m.If(rd_v):
            m.d.sync += row.eq(Cat(row[L:], self.act_rdata))
        tc_regs = [Signal(data.ArrayLayout(signed(16), C), name=f"tc{g}") for g in range(Dc)]
        ta_shape = att.ta.shape().elem_shape
        ta_top = (1 << (ta_shape.width - 1)) - 1
        ta_regs = [Signal(data.ArrayLayout(ta_shape, C), name=f"ta{g}") for g in range(n_ta)]
        for g in range(Dc):
            for ch in range(C):
                m.d.comb += att.tc[g * C + ch].eq(tc_regs[g][ch])
        for h in range(H):
            m.d.comb += att.ta[h].eq(ta_regs[h // C][h % C])
        cbits = Signal(D)
        q_start, in_query, w_busy = Signal(), Signal(), Signal()
        wi = Signal(range(c.max_t + 1))
        wcount2 = Signal(range(Dw + 1))
        tl = Signal(range(Dc + n_ta + 2))
        tl_prev = Signal(range(Dc + n_ta + 2))
        tl_v = Signal()

        # ------------------------------------------------------------ the sequencer
        m.d.comb += self.busy.eq(1)
        err = Signal(8)

        def await_product(done, ops, nxt):
            """In a state that waits for a product: a runner fault ends the command; ``done``
            runs ``ops`` and moves on to ``nxt``."""
            with m.If(self.run_done & self.run_error):
                m.d.sync += err.eq(Status.FAULT)
                m.next = "DONE"
            with m.Elif(done):
                m.d.sync += ops
                m.next = nxt
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(0)
                with m.If(self.start):
                    m.d.sync += [p.eq(self.params), self.cycles.eq(0), self.active.eq(0)]
                    m.next = "SIZE"
            with m.State("SIZE"):
                m.d.sync += [
                    fw.eq((p.f + L - 1) >> c.lane_bits),
                    t_dw.eq(p.t * Dw), t_dc.eq(p.t * Dc), n_dw.eq(p.n * Dw),
                    f_dw.eq(p.f * Dw), h_beats.eq(p.t * ((p.n + C - 1) >> (C.bit_length() - 1))),
                    slot.eq(Mux(p.slot < ly.kv_slots, p.slot, 0)),
                ]
                m.next = "SIZE2"
            with m.State("SIZE2"):
                m.d.sync += [t_fw.eq(p.t * fw), d_fw.eq(fw * D),
                             len0.eq(Mux(fresh, 0, att.length))]
                m.next = "CHECK"
            with m.State("CHECK"):
                common = ((p.t == 0) | (p.t > c.max_t) | (p.shift > 15) |
                          (p.flags & ~(LAYER_FRESH | LAYER_HEAD) & 0xFF).any() |
                          (p.res_base + t_dc > ly.res_words))
                layer_bad = ((p.slot >= ly.kv_slots) | (p.f == 0) | (p.f > ly.max_ff) |
                             (p.w_base + o_w1 + pad(f_dw) + pad(d_fw) > dev.weight_words) |
                             (p.th_base + 3 * D + p.f > dev.thresh_words) |
                             (p.p_base + PW > ly.param_words))
                head_bad = ((p.n == 0) | (p.n > c.max_n) |
                            (p.w_base + n_dw > dev.weight_words) |
                            (p.p_base + Dc > ly.param_words) | (h_beats > dev.result_beats))
                m.d.sync += [bad.eq(common | Mux(head, head_bad, layer_bad)),
                             full.eq(~head & (len0 + p.t > cap)),
                             pb.eq(p.p_base), w_o.eq(p.w_base + o_wo),
                             w_1.eq(p.w_base + o_w1),
                             w_2.eq(p.w_base + o_w1 + pad(f_dw))]
                if banked:
                    fw_ok = ((fw & (fw - 1)) == 0) | (fw[:P.bit_length() - 1] == 0)
                    m.d.sync += use_gemv.eq(
                        (p.t == 1) & (p.w_base[:P.bit_length() - 1] == 0) &
                        ((p.th_base & (C - 1)) == 0) & fw_ok & (fw * C >= P))
                m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(bad):
                    m.d.sync += err.eq(Status.OUT_OF_RANGE)
                    m.next = "DONE"
                with m.Elif(full):
                    m.d.sync += err.eq(Status.CACHE_FULL)
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += [err.eq(Status.OK),
                                 rp_setup(gen=1, write=0, bits=1, soff=0, toff=0,
                                          region=reg["xb"])]
                    m.d.comb += att.clear_slot.eq(fresh & ~head)
                    m.next = "BIN"

            # Step 1 (or the head's binarisation).
            with m.State("BIN"):
                m.d.comb += fire.eq(gen_left != 0)
                with m.If(gen_left != 0):
                    m.d.sync += gen_left.eq(gen_left - 1)
                with m.If(rp_left == 0):
                    m.d.sync += gemm(thr=1, n=3 * D, k=D, act=reg["xb"], act_count=t_dw,
                                     w=p.w_base, w_count=3 * D * Dw, th=p.th_base,
                                     th_count=3 * D)
                    m.next = "QKV_RUN"
                    with m.If(head):
                        m.d.sync += gemm(thr=0, n=p.n, k=D, act=reg["xb"], act_count=t_dw,
                                         w=p.w_base, w_count=n_dw, to_stream=0)
                        m.next = "HEAD_RUN"
            with m.State("HEAD_RUN"):
                m.d.comb += self.run_start.eq(1)
                m.next = "HEAD_WAIT"
            with m.State("HEAD_WAIT"):
                await_product(self.run_done, [], "DONE")

            # Step 2: Qb|Kb|Vb rows.
            with m.State("QKV_RUN"):
                m.d.comb += launch()
                m.d.comb += [pk.cmd.valid.eq(1),
                             pk.cmd.payload.t.eq(p.t), pk.cmd.payload.n.eq(3 * D),
                             pk.cmd.payload.base.eq(reg["qkv"])]
                m.d.sync += [i.eq(0), wcount.eq(0)]
                m.next = "QKV_WAIT"
            with m.State("QKV_WAIT"):
                m.d.comb += packing.eq(1)
                await_product(pk.done, [tl.eq(0), tl_v.eq(0)], "TC_LOAD")

            # Context and attention thresholds into registers (saturated into their fields).
            with m.State("TC_LOAD"):
                m.d.comb += [self.par_raddr0.eq(Mux(tl < Dc, pb + off["tc"] + tl,
                                                    pb + off["ta"] + tl - Dc)),
                             self.par_ren0.eq(tl < Dc + n_ta)]
                m.d.sync += [tl.eq(tl + 1), tl_prev.eq(tl), tl_v.eq(tl < Dc + n_ta)]
                with m.If(tl_v):
                    for g in range(Dc + n_ta):
                        with m.If(tl_prev == g):
                            for ch in range(C):
                                if g < Dc:
                                    m.d.sync += tc_regs[g][ch].eq(
                                        _clamp(s_in[ch], -(1 << 15), (1 << 15) - 1))
                                else:
                                    m.d.sync += ta_regs[g - Dc][ch].eq(
                                        _clamp(s_in[ch], -ta_top - 1, ta_top))
                with m.If(~tl_v & (tl != 0)):
                    m.d.sync += [i.eq(0), row_addr.eq(reg["qkv"]),
                                 rd_addr.eq(reg["qkv"] + Dw), wcount.eq(0)]
                    m.next = "KV_READ"

            # Steps 3-5: append every token's Kb|Vb, then query every token.
            with m.State("KV_READ"):
                m.d.comb += self.act_ren.eq(1)
                m.d.sync += [rd_addr.eq(rd_addr + 1), wcount.eq(wcount + 1)]
                with m.If(wcount == 2 * Dw - 1):
                    m.next = "KV_LAST"
            with m.State("KV_LAST"):
                m.next = "KV_PUSH"
            with m.State("KV_PUSH"):
                m.d.comb += [att.kv.valid.eq(1), att.kv.payload.k.eq(row[:D]),
                             att.kv.payload.v.eq(row[D:])]
                with m.If(att.kv.ready):
                    m.d.sync += [i.eq(i + 1), row_addr.eq(row_addr + 3 * Dw),
                                 rd_addr.eq(row_addr + 4 * Dw), wcount.eq(0)]
                    m.next = "KV_READ"
                    with m.If(i == p.t - 1):
                        m.d.sync += [i.eq(0), row_addr.eq(reg["qkv"]), rd_addr.eq(reg["qkv"]),
                                     cb_addr.eq(reg["cb"]), wi.eq(0), w_busy.eq(0)]
                        m.d.comb += q_start.eq(1)
                        m.next = "QUERY"
            with m.State("QUERY"):
                # The query reader (below) fetches and pushes Qb rows while the attention unit
                # scans; here each answer is taken and its Cb row written, overlapping the next
                # query's fetch and scan.
                m.d.comb += in_query.eq(1)
                with m.If(w_busy):
                    m.d.comb += [cb_wen.eq(1), cb_word.eq(cbits.word_select(wcount2, L))]
                    m.d.sync += [cb_addr.eq(cb_addr + 1), wcount2.eq(wcount2 + 1)]
                    with m.If(wcount2 == Dw - 1):
                        m.d.sync += [w_busy.eq(0), wi.eq(wi + 1)]
                        with m.If(wi == p.t - 1):
                            m.d.sync += gemm(thr=0, n=D, k=D, act=reg["cb"], act_count=t_dw,
                                             w=w_o, w_count=D * Dw)
                            m.next = "O_RUN"
                with m.Else():
                    m.d.comb += att.c.ready.eq(1)
                    with m.If(att.c.valid):
                        m.d.sync += [cbits.eq(att.c.payload.bits), wcount2.eq(0),
                                     w_busy.eq(1)]
                        with m.If(att.c.payload.error):
                            m.d.sync += err.eq(Status.FAULT)
                            m.next = "DONE"

            # Step 6: O through the residual unit.
            with m.State("O_RUN"):
                m.d.comb += launch()
                m.d.sync += rp_setup(gen=0, write=1, bits=1, soff=off["so"], toff=off["th_ffn"],
                                     region=reg["x1b"])
                m.next = "O_WAIT"
            with m.State("O_WAIT"):
                m.d.comb += to_res.eq(1)
                await_product(rp_left == 0,
                              gemm(thr=1, n=p.f, k=D, act=reg["x1b"], act_count=t_dw, w=w_1,
                                   w_count=f_dw, th=p.th_base + 3 * D, th_count=p.f), "F1_RUN")

            # Step 7: Hb rows.
            with m.State("F1_RUN"):
                m.d.comb += launch()
                m.d.comb += [pk.cmd.valid.eq(1),
                             pk.cmd.payload.t.eq(p.t), pk.cmd.payload.n.eq(p.f),
                             pk.cmd.payload.base.eq(reg["hb"])]
                m.next = "F1_WAIT"
            with m.State("F1_WAIT"):
                m.d.comb += packing.eq(1)
                await_product(pk.done, gemm(thr=0, n=D, k=p.f, act=reg["hb"], act_count=t_fw,
                                            w=w_2, w_count=d_fw), "F2_RUN")

            # Step 8: Y through the residual unit.
            with m.State("F2_RUN"):
                m.d.comb += launch()
                m.d.sync += rp_setup(gen=0, write=1, bits=0, soff=off["s2"], toff=0,
                                     region=reg["xb"])
                m.next = "F2_WAIT"
            with m.State("F2_WAIT"):
                m.d.comb += to_res.eq(1)
                await_product(rp_left == 0, [], "DONE")

            with m.State("DONE"):
                m.d.sync += [self.done.eq(1), self.status.eq(err)]
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
                m.d.comb += [att.q.valid.eq(1), att.q.payload.q.eq(row[D:]),
                             att.q.payload.pos.eq(len0 + i)]
                with m.If(att.q.ready):
                    m.d.sync += [i.eq(i + 1), wcount.eq(0), row_addr.eq(row_addr + 3 * Dw),
                                 rd_addr.eq(row_addr + 3 * Dw)]
                    m.next = "READ"
                    with m.If(i == p.t - 1):
                        m.next = "IDLE"
                with m.If(~in_query):
                    m.next = "IDLE"
        return m
