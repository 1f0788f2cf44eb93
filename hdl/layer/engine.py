"""The layer engine: all of the spec's transformer layer (steps 1-8) out of the device's stores.

``start`` (one cycle) latches ``params`` (``layer_layout``: the fields of the LAYER command). The
engine checks every size and region, and that ``p_base`` is a multiple of ``param_read_words``
(``status`` ``OUT_OF_RANGE``; ``CACHE_FULL`` if the tokens do not fit the KV cache slot), then
runs, for ``T`` token rows ``X`` in the residual store
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
read ports of the parameter store. All memories have a read latency of one cycle (the engine
registers the activation store's read data once more inside).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.core_config import Op
from ...host.device_config import PARAM_BITS, DeviceConfig
from ...host.layer_layout import (
    EngineStep,
    act_regions,
    head_param_words,
    matrix_offsets,
    param_offsets,
    param_read_words,
    param_words_per_layer,
)
from ...host.protocol import (
    ARGUMENTS,
    LAYER_BITS_MASK,
    LAYER_BITS_SHIFT,
    LAYER_FRESH,
    LAYER_HEAD,
    LAYER_TERNARY,
    Opcode,
    Status,
)
from ..core.gemm_layouts import result_ints_word, result_layout
from ..core.gemm_runner import run_layout
from ..core.gemv import Gemv, gemv_layout
from ..lib.register_slice import RegisterSlice
from .attention import AttentionUnit, context_shape
from .attention_steps import AttentionSteps
from .level_packer import LevelPacker
from .multi_threshold import MultiThreshold
from .packer import ResultPacker
from .residual_pass import ResidualPass

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
    step : Out(EngineStep)  (what the engine does this cycle: for profiling, unused on boards)
    run_start : Out(1);  run_params : Out(run_layout(dev));  run_done, run_error : In(1)
    run_active : In(32);  run_result : In(stream.Signature(result_layout(core)))
    res_waddr, res_wdata, res_wen : the result store's write port, for an LM head on the GEMV
    unit (``head_gemv``, set from the command's checks to its next start: the head's
    ``head_beats`` beats are the engine's; otherwise they are the runner's)
    act_waddr, act_wdata, act_wen (lanes // cols);  act_raddr, act_ren, act_rdata
    resid_raddr, resid_ren, resid_rdata, resid_waddr, resid_wdata, resid_wen  (words of cols int16)
    par_raddr0, par_ren0, par_rdata0, par_raddr1, par_ren1, par_rdata1 (cols x PARAM_BITS,
    ``param_read_words`` words a read: ``onebit.hdl.lib.run_read_store``'s runs; each
    read's data is taken the cycle after ``par_ren<i>`` only, so the store may read every
    cycle and need not hold it)
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev, layer_for="LayerEngine")
        self._dev = dev
        c, ly = dev.core, dev.layer
        ports = {
            "start": In(1), "params": In(layer_layout()), "clear_cache": In(1),
            "done": Out(1), "status": Out(8), "busy": Out(1),
            "cycles": Out(32), "active": Out(32), "kv_length": Out(16),
            "step": Out(EngineStep),
            "run_start": Out(1), "run_params": Out(run_layout(dev)),
            "run_done": In(1), "run_error": In(1), "run_active": In(32),
            "run_result": In(stream.Signature(result_layout(c))),
            "act_waddr": Out(range(dev.act_words)), "act_wdata": Out(c.lanes),
            "act_wen": Out(c.lanes // c.cols),
            "act_raddr": Out(range(dev.act_words)), "act_ren": Out(1), "act_rdata": In(c.lanes),
            "resid_raddr": Out(range(ly.res_words)), "resid_ren": Out(1),
            "resid_rdata": In(16 * c.cols),
            "resid_waddr": Out(range(ly.res_words)), "resid_wdata": Out(16 * c.cols),
            "resid_wen": Out(1),
        }
        for i in range(2):
            ports.update({f"par_raddr{i}": Out(range(ly.param_words)), f"par_ren{i}": Out(1),
                          f"par_rdata{i}": In(PARAM_BITS * c.cols *
                                              param_read_words(dev))})
        if dev.weight_banks > 1:
            ports.update({
                "w_laddr": Out(range(-(-dev.weight_words // dev.weight_banks))),
                "w_lren": Out(1), "w_lmode": Out(1),
                "w_ldata": In(c.lanes * dev.weight_banks),
                "th_laddr": Out(range(-(-dev.thresh_words // dev.thresh_banks))),
                "th_lren": Out(1), "th_ldata": In(c.threshold_width * c.cols),
                "res_waddr": Out(range(dev.result_beats)), "res_wdata": Out(dev.result_word_bits),
                "res_wen": Out(1), "head_gemv": Out(1),
                "head_beats": Out(range(dev.result_beats + 1)),
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
        off = param_offsets(dev)
        n_ta = -(-H // C)
        cap = ly.kv_capacity
        nb = ly.max_bits
        multi = ly.multi_threshold
        R = param_read_words(dev)                   # p_base a multiple of it (a run's start)
        rcs = ly.row_copies                         # weight rows' room: ternary rows are 2x

        m.submodules.residual = rpass = ResidualPass(dev, registered=ly.multi_threshold)
        if not multi:
            m.submodules.packer = pk = ResultPacker(c, depth=dev.act_words)
        # The one-bit scan takes two cached tokens a cycle (a second read port on the cache).
        m.submodules.attention = att = AttentionUnit(heads=H, head_dim=DH, capacity=cap,
                                                     slots=ly.kv_slots, bits=nb,
                                                     scan_tokens=2 if nb == 1 else 1)
        # The activation store's read data reaches the engine's readers (the attention steps'
        # row, the GEMV unit's line) through one register: the store's clock-to-out and a route
        # to registers across the chip limited the ULX3S-85F's clock. They take read latency 2.
        act_q = Signal(c.lanes)
        m.d.sync += act_q.eq(self.act_rdata)
        m.submodules.steps = steps = AttentionSteps(dev, act_latency=2)
        # CLEAR_CACHE reaches the attention unit a cycle later (timing: the command processor's
        # decision fanned out to the unit's enables; no command follows within a cycle).
        clear_q = Signal()
        m.d.sync += clear_q.eq(self.clear_cache)
        m.d.comb += att.clear.eq(clear_q)
        # A fresh layer's slot is cleared the cycle after DECIDE, from a register (timing: the
        # decision's comparison ran through the unit's append handshake into the KV cache's
        # write enables). The cache is first touched in step 2.
        clear_slot_q = Signal()
        m.d.sync += clear_slot_q.eq(0)
        m.d.comb += att.clear_slot.eq(clear_slot_q)

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
            m.submodules.gemv = gv = Gemv(dev, max_bits=nb, act_latency=2, w_latency=2)
            m.d.comb += [self.w_laddr.eq(gv.w_laddr), self.w_lren.eq(gv.w_lren),
                         self.w_lmode.eq(gv.w_lmode),
                         gv.w_ldata.eq(self.w_ldata), self.th_laddr.eq(gv.th_laddr),
                         self.th_lren.eq(gv.th_lren), gv.th_ldata.eq(self.th_ldata),
                         gv.act_rdata.eq(act_q)]
            gq = Signal(gemv_layout(dev, nb))
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
        m.d.comb += [att.slot.eq(slot), self.kv_length.eq(att.length)]
        fw = Signal(range(c.max_chunks + 2))
        a_m1 = Signal(range(nb))                    # the command's activation bits less one
        # Ternary weights (``tern``): each row is its two planes side by side and each row the
        # products read holds its planes twice, so a product sums the two planes' products
        # (halved, below); ``corr_f`` is what W2's padding adds (its rows' middle padding,
        # ``2 L (ceil(F / lanes) lanes - F)``) and ``corr_on`` whether the product is W2.
        tern, corr_on = Signal(), Signal()
        corr_f = Signal(32)
        kd = Signal(range(2 * D + 1))               # K of the products over D inputs
        m.d.comb += kd.eq(Mux(tern, 2 * D, D))
        adj = Signal(result_layout(c))              # the products' results, ternary halved
        m.d.comb += adj.eq(src.payload)
        if ly.ternary:
            with m.If(tern):
                for ch in range(C):
                    m.d.comb += adj.ints[ch].eq(
                        (src.payload.ints[ch] - Mux(corr_on, corr_f, 0)) >> 1)
        t_dw, t_dc, t_fw = (Signal(32, name=n) for n in ("t_dw", "t_dc", "t_fw"))
        f_dw, d_fw, n_dw, h_beats = (Signal(32, name=n) for n in ("f_dw", "d_fw", "n_dw",
                                                                   "h_beats"))
        len0 = Signal(range(cap + 1))
        # With multi-bit activations: activation words of the T rows (A planes each) and the
        # multi-threshold beats of a pass.
        t_adw, t_afw, t_3dc, t_fc = (Signal(32, name=n) for n in ("t_adw", "t_afw", "t_3dc",
                                                                   "t_fc"))
        # A token's words in each multi-threshold pass's rows (A planes, twice with ternary
        # weights where products read them), in registers (timing: a multiplier went on from
        # the sequencer's next state into the unit's config).
        strides = {name: Signal(range(dev.act_words + 1), name=f"stride_{name}")
                   for name in ("d", "3d", "f")}
        bad, full = Signal(), Signal()
        pb = Signal(range(ly.param_words))
        w_o, w_1, w_2 = (Signal(range(dev.weight_words), name=n) for n in ("w_o", "w_1", "w_2"))
        # W2's start and the FFN matrices' span, summed a state before CHECK compares their
        # end with the store (timing: the sizes, the sums and the compare were one path of
        # carry chains into ``bad``, the ULX3S-85F's critical path).
        w2_full, ffn_span = Signal(34), Signal(34)

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

        def gemm(*, thr, n, k, act, act_count, w, w_count, th=0, th_count=0, to_stream=1,
                 corr=0):
            ops = [rq.op.eq(Op.XOR), rq.threshold.eq(thr), rq.stream.eq(to_stream),
                   rq.t.eq(p.t), rq.n.eq(n), rq.k.eq(k), rq.act_base.eq(act),
                   rq.act_count.eq(act_count), rq.weight_base.eq(w),
                   rq.weight_count.eq(w_count), rq.thresh_base.eq(th),
                   rq.thresh_count.eq(th_count)]
            if c.max_bits > 1:
                ops += [rq.bits_m1.eq(a_m1)]
            if ly.ternary:
                ops += [corr_on.eq(corr)]
            if banked:
                ops += [gq.threshold.eq(thr), gq.n.eq(n), gq.k.eq(k), gq.act_base.eq(act),
                        gq.w_line.eq(w >> (P.bit_length() - 1)),
                        gq.th_line.eq(th >> (C.bit_length() - 1))]
                if multi:
                    ops += [gq.bits_m1.eq(a_m1)]
            return ops

        # ------------------------------------------------------------ residual pass
        # (``ResidualPass``: X through the residual unit, back in place, its bits into the
        # activation store.) Its parameter port 0 is the threshold loader's in TC_LOAD.
        def rp_setup(*, gen, write, bits, soff, toff, region):
            return [rpass.setup.eq(1), rpass.config.gen.eq(gen), rpass.config.write.eq(write),
                    rpass.config.bits.eq(bits), rpass.config.soff.eq(soff),
                    rpass.config.toff.eq(toff), rpass.config.region.eq(region)]

        m.d.comb += [rpass.t.eq(p.t), rpass.beats.eq(t_dc), rpass.shift.eq(p.shift[:4]),
                     rpass.res_base.eq(p.res_base), rpass.param_base.eq(pb),
                     rpass.y.payload.eq(adj),
                     self.resid_raddr.eq(rpass.resid_raddr), self.resid_ren.eq(rpass.resid_ren),
                     rpass.resid_rdata.eq(self.resid_rdata),
                     self.par_raddr0.eq(rpass.par_raddr0), self.par_ren0.eq(rpass.par_ren0),
                     rpass.par_rdata0.eq(self.par_rdata0[:PARAM_BITS * C]),
                     self.par_raddr1.eq(rpass.par_raddr1), self.par_ren1.eq(rpass.par_ren1),
                     rpass.par_rdata1.eq(self.par_rdata1[:PARAM_BITS * C]),
                     self.resid_waddr.eq(rpass.resid_waddr), self.resid_wdata.eq(rpass.resid_wdata),
                     self.resid_wen.eq(rpass.resid_wen)]
        # The thresholds that TC_LOAD reads pass a register before they are clamped into
        # theirs (the parameter store's clock-to-out, its blocks' output mux and the clamp's
        # compares limited the ULX3S-85F's clock).
        s_q = Signal(PARAM_BITS * C)
        m.d.sync += s_q.eq(self.par_rdata0[:PARAM_BITS * C])
        s_in = data.View(data.ArrayLayout(signed(PARAM_BITS), C), s_q)
        rp_left_zero = rpass.done

        # Activation store writes: the residual pass's bits, the packer's groups, or a Cb word
        # (with multi-bit activations: the level packer's planes).
        packing = Signal()
        to_res = Signal()
        if not multi:
            with m.If(rpass.act_wen.any()):
                m.d.comb += [self.act_waddr.eq(rpass.act_waddr),
                             self.act_wdata.eq(rpass.act_wdata), self.act_wen.eq(rpass.act_wen)]
            with m.Elif(packing):
                m.d.comb += [self.act_waddr.eq(pk.waddr), self.act_wdata.eq(pk.wdata),
                             self.act_wen.eq(pk.wen)]
            with m.Elif(steps.cb_wen):
                m.d.comb += [self.act_waddr.eq(steps.cb_waddr),
                             self.act_wdata.eq(steps.cb_wdata),
                             self.act_wen.eq((1 << gpw) - 1)]

        # GEMM results: to the packer (``packing``) or the residual pass (which never stalls).
        with m.If(packing):
            if not multi:
                m.d.comb += [pk.i.valid.eq(src.valid), pk.i.payload.eq(src.payload),
                             src.ready.eq(pk.i.ready)]
        with m.Elif(to_res):
            m.d.comb += [rpass.y.valid.eq(src.valid), src.ready.eq(rpass.y.ready)]
        # An LM head on the GEMV unit (T = 1): its beats into the result store as the runner
        # writes them (``cols`` integers of ``RESULT_INT_BYTES``, ternary sums not halved).
        head_out = Signal()
        head_count = Signal(range(dev.result_beats + 1))
        if banked:
            word = result_ints_word(m, [src.payload.ints[i] for i in range(C)], "head_int")
            m.d.comb += [self.res_waddr.eq(head_count), self.res_wdata.eq(word),
                         self.head_gemv.eq(use_gemv), self.head_beats.eq(head_count)]
            with m.If(head_out):
                m.d.comb += [src.ready.eq(1),
                             self.res_wen.eq(src.valid & (head_count < dev.result_beats))]
                with m.If(src.valid):
                    m.d.sync += head_count.eq(head_count + 1)

        # ------------------------------------------------------------ multi-threshold
        # (Multi-bit activations: every quantiser is the multi-threshold unit, fed by a
        # product's integers (``packing``), the residual pass's X (``quantising``: its beats
        # wait in a FIFO, and the pass fires only while the FIFO has room for every beat in
        # flight) or the attention steps' context sums; the level packer writes the planes.)
        quantising = Signal()
        mt_params = Signal()                      # the unit has the parameter store's ports
        if multi:
            width = max(16, c.result_width, context_shape(cap, nb).width)
            m.submodules.mt = mt = MultiThreshold(dev, width=width)
            m.submodules.levels = lp = LevelPacker(dev)
            m.d.comb += [self.act_waddr.eq(lp.act_waddr), self.act_wdata.eq(lp.act_wdata),
                         self.act_wen.eq(lp.act_wen), lp.bits_m1.eq(a_m1)]
            wiring.connect(m, mt.o, lp.i)
            # The packer's count against a pass's beats, registered (timing: a 32-bit compare
            # went on through the sequencer's next state into the next pass's setup); cleared
            # by a setup, so a count of the pass before never ends the next.
            written = {name: Signal(name=f"written_{name}") for name in ("dc", "3dc", "fc")}
            m.d.sync += [written["dc"].eq(lp.written == t_dc),
                         written["3dc"].eq(lp.written == t_3dc),
                         written["fc"].eq(lp.written == t_fc)]
            with m.If(lp.setup):
                m.d.sync += [flag.eq(0) for flag in written.values()]
            # The attention steps' context beats (a group picked out of the answer's sums)
            # reach the multi-threshold unit through two register slices, one by each unit:
            # the pick, routed across the chip into the unit's beat register, limited the
            # ULX3S-85F's clock, and then the unit's ready, routed back into the one slice's
            # output enables.
            m.submodules.ctx_slice = ctx_slice = RegisterSlice(steps.ctx.payload.shape())
            m.submodules.ctx_slice2 = ctx_slice2 = RegisterSlice(steps.ctx.payload.shape())
            wiring.connect(m, steps.ctx, ctx_slice.i)
            wiring.connect(m, ctx_slice.o, ctx_slice2.i)
            ctx = ctx_slice2.o
            depth = 8
            m.submodules.x_fifo = xf = fifo.SyncFIFOBuffered(width=16 * C, depth=depth)
            pending = Signal(range(depth + 1))    # beats fired, not yet out of the pass
            m.d.sync += pending.eq(pending + rpass.fired - rpass.x_valid)
            m.d.comb += [xf.w_data.eq(self.resid_wdata),
                         xf.w_en.eq(rpass.x_valid & quantising),
                         rpass.generate.eq(quantising & (xf.level + pending < depth - 1))]
            x_fifo = data.View(data.ArrayLayout(signed(16), C), xf.r_data)
            with m.If(packing):
                m.d.comb += [mt.i.valid.eq(src.valid), src.ready.eq(mt.i.ready)]
                m.d.comb += [mt.i.payload[ch].eq(adj.ints[ch]) for ch in range(C)]
            with m.Elif(quantising):
                m.d.comb += [mt.i.valid.eq(xf.r_rdy), xf.r_en.eq(mt.i.ready)]
                m.d.comb += [mt.i.payload[ch].eq(x_fifo[ch]) for ch in range(C)]
            with m.Else():
                m.d.comb += [mt.i.valid.eq(ctx.valid), ctx.ready.eq(mt.i.ready)]
                m.d.comb += [mt.i.payload[ch].eq(ctx.payload[ch]) for ch in range(C)]
            m.d.comb += [steps.bits_m1.eq(a_m1), att.bits_m1.eq(a_m1),
                         mt.par_rdata0.eq(self.par_rdata0), mt.par_rdata1.eq(self.par_rdata1)]
            with m.If(mt_params):
                m.d.comb += [self.par_raddr0.eq(mt.par_raddr0), self.par_ren0.eq(mt.par_ren0),
                             self.par_raddr1.eq(mt.par_raddr1), self.par_ren1.eq(mt.par_ren1)]

        def mt_setup(*, tile_major, period, th, region, row_words, stride, n, copied=False):
            """Start the multi-threshold unit and the level packer (comb) on a pass whose rows
            of ``n`` channels (``row_words`` words a plane, ``strides[stride]`` a token) go to
            ``region``, with the thresholds from parameter word ``th``; ``copied``: rows that
            products read, each plane written twice side by side for ternary weights."""
            if copied and ly.ternary:
                return mt_setup(tile_major=tile_major, period=period, th=th, region=region,
                                row_words=Mux(tern, 2 * row_words, row_words), stride=stride,
                                n=n) + [lp.copy_words.eq(Mux(tern, row_words, 0))]
            return [mt.setup.eq(1), lp.setup.eq(1),
                    mt.config.tile_major.eq(tile_major), mt.config.period.eq(period),
                    mt.config.th_base.eq(th),
                    mt.config.region.eq(region), mt.config.row_stride.eq(strides[stride]),
                    mt.config.n.eq(n), mt.config.bits_m1.eq(a_m1), lp.plane_words.eq(row_words),
                    lp.tile_major.eq(tile_major)]

        # ------------------------------------------------------------ attention steps
        # (``AttentionSteps``: steps 3-5, the KV cache appends and the queries, their Cb rows
        # into the activation store.) The GEMV unit takes the activation read port while it
        # runs.
        wiring.connect(m, steps.kv, att.kv)
        wiring.connect(m, steps.q, att.q)
        wiring.connect(m, att.c, steps.c)
        m.d.comb += [steps.t.eq(p.t), steps.len0.eq(len0), steps.act_rdata.eq(act_q),
                     self.act_raddr.eq(steps.act_raddr), self.act_ren.eq(steps.act_ren)]
        if banked:
            with m.If(gv.act_ren):
                m.d.comb += [self.act_raddr.eq(gv.act_raddr), self.act_ren.eq(1)]
        # The context and attention thresholds, loaded into registers in TC_LOAD (with multi-bit
        # activations only ``ta``: the multi-threshold unit reads ``tc`` itself).
        tc_words = 0 if multi else Dc
        tc_regs = [Signal(data.ArrayLayout(signed(16), C), name=f"tc{g}")
                   for g in range(tc_words)]
        ta_shape = att.ta.shape().elem_shape
        ta_top = (1 << (ta_shape.width - 1)) - 1
        ta_regs = [Signal(data.ArrayLayout(ta_shape, C), name=f"ta{g}") for g in range(n_ta)]
        for g in range(tc_words):
            for ch in range(C):
                m.d.comb += att.tc[g * C + ch].eq(tc_regs[g][ch])
        for h in range(H):
            m.d.comb += att.ta[h].eq(ta_regs[h // C][h % C])
        tl = Signal(range(Dc + n_ta + 2))
        tl_prev = Signal(range(Dc + n_ta + 2))
        tl_v = Signal()
        tl_q, tl_qv, tc_loading = Signal.like(tl_prev), Signal(), Signal()
        m.d.sync += [tl_q.eq(tl_prev), tl_qv.eq(tl_v & tc_loading)]
        with m.If(tl_qv):
            for g in range(Dc + n_ta):
                with m.If(tl_q == g):
                    for ch in range(C):
                        if g < Dc and multi:
                            pass
                        elif g < Dc:
                            m.d.sync += tc_regs[g][ch].eq(
                                _clamp(s_in[ch], -(1 << 15), (1 << 15) - 1))
                        else:
                            m.d.sync += ta_regs[g - Dc][ch].eq(
                                _clamp(s_in[ch], -ta_top - 1, ta_top))

        # ------------------------------------------------------------ the sequencer
        m.d.comb += self.busy.eq(1)
        err = Signal(8)

        def await_product(done, ops, nxt, pulses=()):
            """In a state that waits for a product: a runner fault ends the command; ``done``
            runs ``ops`` (and the one-cycle ``pulses``) and moves on to ``nxt``."""
            with m.If(self.run_done & self.run_error):
                m.d.sync += err.eq(Status.FAULT)
                m.next = "DONE"
            with m.Elif(done):
                m.d.sync += ops
                m.d.comb += list(pulses)
                m.next = nxt

        def tc_load():
            """One cycle of loading the context and attention thresholds (``tc``, ``ta``) from
            the parameter store's port 0 into their registers: word ``tl`` read, word
            ``tl_prev`` arriving when ``tl_v`` (and written from its register a cycle later,
            ``tl_q`` when ``tl_qv``); ``tl`` stops one past the last word."""
            m.d.comb += [self.par_raddr0.eq(Mux(tl < Dc, pb + off["tc"] + tl,
                                                pb + off["ta"] + tl - Dc)),
                         self.par_ren0.eq(tl < Dc + n_ta), tc_loading.eq(1)]
            m.d.sync += [tl_prev.eq(tl), tl_v.eq(tl < Dc + n_ta)]
            with m.If(tl != Dc + n_ta + 1):
                m.d.sync += tl.eq(tl + 1)

        with m.FSM(name="seq"):
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(0)
                with m.If(self.start):
                    m.d.sync += [p.eq(self.params), self.cycles.eq(0), self.active.eq(0)]
                    m.next = "SIZE"
            with m.State("SIZE"):
                m.d.comb += self.step.eq(EngineStep.SETUP)
                m.d.sync += [
                    fw.eq((p.f + L - 1) >> c.lane_bits),
                    t_dw.eq(p.t * Dw), t_dc.eq(p.t * Dc), n_dw.eq(p.n * Dw),
                    f_dw.eq(p.f * Dw), h_beats.eq(p.t * ((p.n + C - 1) >> (C.bit_length() - 1))),
                    slot.eq(Mux(p.slot < ly.kv_slots, p.slot, 0)),
                ]
                if multi:
                    m.d.sync += a_m1.eq(p.flags[LAYER_BITS_SHIFT:LAYER_BITS_SHIFT + 2])
                if ly.ternary:
                    m.d.sync += tern.eq((p.flags & LAYER_TERNARY) != 0)
                m.next = "SIZE2"
            with m.State("SIZE2"):
                m.d.comb += self.step.eq(EngineStep.SETUP)
                m.d.sync += [t_fw.eq(p.t * fw), d_fw.eq(fw * D),
                             len0.eq(Mux(fresh, 0, att.length)),
                             w2_full.eq(p.w_base + o_w1 + pad(f_dw * rcs)),
                             ffn_span.eq(pad(fw * (D * rcs)))]
                if multi:
                    m.d.sync += [strides["d"].eq(Mux(tern, 2 * Dw, Dw) * (a_m1 + 1)),
                                 strides["3d"].eq(3 * Dw * (a_m1 + 1)),
                                 strides["f"].eq(Mux(tern, 2 * fw, fw) * (a_m1 + 1)),
                                 t_adw.eq(Mux(tern, 2 * t_dw, t_dw) * (a_m1 + 1)),
                                 t_3dc.eq(t_dc * 3),
                                 t_fc.eq(p.t * ((p.f + C - 1) >> (C.bit_length() - 1)))]
                if ly.ternary:
                    pad_f = (fw << c.lane_bits) - p.f
                    m.d.sync += corr_f.eq(((pad_f << (a_m1 + 1)) - pad_f) << 1)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.step.eq(EngineStep.SETUP)
                flags_ok = (LAYER_FRESH | LAYER_HEAD | (LAYER_BITS_MASK if multi else 0) |
                            (LAYER_TERNARY if ly.ternary else 0))
                common = ((p.t == 0) | (p.t > c.max_t) | (p.shift > 15) |
                          (p.flags & ~flags_ok & 0xFF).any() |
                          (p.res_base + t_dc > ly.res_words))
                if multi:
                    common |= p.flags[LAYER_BITS_SHIFT:LAYER_BITS_SHIFT + 2] > nb - 1
                if R > 1:       # the multi-threshold rows start runs of the parameter store
                    common |= p.p_base[:R.bit_length() - 1].any()
                layer_bad = ((p.slot >= ly.kv_slots) | (p.f == 0) | (p.f > ly.max_ff) |
                             (w2_full + ffn_span > dev.weight_words) |
                             (p.p_base + PW > ly.param_words))
                if not multi:
                    layer_bad |= p.th_base + 3 * D + p.f > dev.thresh_words
                head_bad = ((p.n == 0) | (p.n > c.max_n) |
                            (p.w_base + n_dw * rcs > dev.weight_words) |
                            (p.p_base + head_param_words(dev) > ly.param_words) |
                            (h_beats > dev.result_beats))
                m.d.sync += [bad.eq(common | Mux(head, head_bad, layer_bad)),
                             full.eq(~head & (len0 + p.t > cap)),
                             pb.eq(p.p_base), w_o.eq(p.w_base + o_wo),
                             w_1.eq(p.w_base + o_w1),
                             w_2.eq(w2_full)]
                if multi:
                    m.d.sync += t_afw.eq(Mux(tern, 2 * t_fw, t_fw) * (a_m1 + 1))
                if banked:
                    fw_ok = ((fw & (fw - 1)) == 0) | (fw[:P.bit_length() - 1] == 0)
                    th_ok = 1 if multi else (p.th_base & (C - 1)) == 0
                    # (The head's rows are D bits, as Wo's, which the GEMV unit takes.)
                    m.d.sync += use_gemv.eq(
                        (p.t == 1) & (p.w_base[:P.bit_length() - 1] == 0) &
                        (head | (th_ok & fw_ok & (fw * C >= P))))
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += self.step.eq(EngineStep.SETUP)
                with m.If(bad):
                    m.d.sync += err.eq(Status.OUT_OF_RANGE)
                    m.next = "DONE"
                with m.Elif(full):
                    m.d.sync += err.eq(Status.CACHE_FULL)
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += err.eq(Status.OK)
                    m.d.comb += rp_setup(gen=1, write=0, bits=int(not multi), soff=0, toff=0,
                                         region=reg["xb"])
                    if multi:
                        m.d.comb += mt_setup(tile_major=1, period=p.t,
                                             th=Mux(head, pb, pb + off["th_attn"]),
                                             region=reg["xb"], row_words=Dw, stride="d", n=D,
                                             copied=True)
                    m.d.sync += clear_slot_q.eq(fresh & ~head)
                    m.next = "BIN"

            # Step 1 (or the head's binarisation).
            with m.State("BIN"):
                m.d.comb += self.step.eq(EngineStep.QUANTISE)
                if multi:
                    m.d.comb += [quantising.eq(1), mt_params.eq(1)]
                    quantised = rp_left_zero & written["dc"]
                else:
                    m.d.comb += rpass.generate.eq(1)
                    quantised = rp_left_zero
                with m.If(quantised):
                    if multi:
                        m.d.sync += gemm(thr=0, n=3 * D, k=kd, act=reg["xb"], act_count=t_adw,
                                         w=p.w_base, w_count=Mux(tern, 6 * D * Dw, 3 * D * Dw))
                        with m.If(~head):
                            m.d.comb += mt_setup(tile_major=1, period=p.t,
                                                 th=pb + off["tqkv"], region=reg["qkv"],
                                                 row_words=3 * Dw, stride="3d", n=3 * D)
                    else:
                        m.d.sync += gemm(thr=1, n=3 * D, k=D, act=reg["xb"], act_count=t_dw,
                                         w=p.w_base, w_count=3 * D * Dw, th=p.th_base,
                                         th_count=3 * D)
                    m.next = "QKV_RUN"
                    with m.If(head):
                        m.d.sync += gemm(thr=0, n=p.n, k=kd if multi else D, act=reg["xb"],
                                         act_count=t_adw if multi else t_dw,
                                         w=p.w_base, w_count=Mux(tern, 2 * n_dw, n_dw),
                                         to_stream=0)
                        m.next = "HEAD_RUN"
            with m.State("HEAD_RUN"):
                m.d.comb += self.step.eq(EngineStep.HEAD)
                m.d.comb += launch()
                if banked:
                    m.d.sync += head_count.eq(0)
                m.next = "HEAD_WAIT"
            with m.State("HEAD_WAIT"):
                m.d.comb += self.step.eq(EngineStep.HEAD)
                if banked:
                    # On the GEMV unit: its beats into the result store, a beat a cycle.
                    m.d.comb += head_out.eq(use_gemv)
                    await_product(Mux(use_gemv, src.valid & src.payload.last, self.run_done),
                                  [], "DONE")
                else:
                    await_product(self.run_done, [], "DONE")

            # Step 2: Qb|Kb|Vb rows.
            with m.State("QKV_RUN"):
                m.d.comb += self.step.eq(EngineStep.QKV)
                m.d.comb += launch()
                if not multi:
                    m.d.comb += [pk.cmd.valid.eq(1),
                                 pk.cmd.payload.t.eq(p.t), pk.cmd.payload.n.eq(3 * D),
                                 pk.cmd.payload.base.eq(reg["qkv"])]
                    m.d.sync += [tl.eq(0), tl_v.eq(0)]
                m.next = "QKV_WAIT"
            with m.State("QKV_WAIT"):
                m.d.comb += self.step.eq(EngineStep.QKV)
                m.d.comb += packing.eq(1)
                if multi:
                    m.d.comb += mt_params.eq(1)
                    await_product(written["3dc"], [tl.eq(Dc - tc_words), tl_v.eq(0)],
                                  "TC_LOAD")
                else:
                    # The one-bit engine's Q, K, V leave the parameter store idle: the
                    # thresholds load while the product runs (TC_LOAD finishes what is left).
                    tc_load()
                    await_product(pk.done, [], "TC_LOAD")

            # Context and attention thresholds into registers (saturated into their fields).
            with m.State("TC_LOAD"):
                m.d.comb += self.step.eq(EngineStep.ATTENTION)
                tc_load()
                # Every word written (not the loads' first cycle, which has none in flight).
                with m.If(~tl_v & ~tl_qv & (tl != Dc - tc_words)):
                    m.d.comb += steps.start.eq(1)
                    if multi:
                        m.d.comb += mt_setup(tile_major=0, period=Dc, th=pb + off["tc"],
                                             region=reg["cb"], row_words=Dw, stride="d", n=D,
                                             copied=True)
                    m.next = "ATTEND"

            # Steps 3-5: every token's Kb|Vb appended, then every token queried.
            with m.State("ATTEND"):
                m.d.comb += self.step.eq(EngineStep.ATTENTION)
                if multi:
                    m.d.comb += mt_params.eq(1)
                with m.If(steps.fault):
                    m.d.sync += err.eq(Status.FAULT)
                    m.next = "DONE"
                if multi:
                    with m.Elif(steps.done):
                        m.next = "CTX_WAIT"
                else:
                    with m.Elif(steps.done):
                        m.d.sync += gemm(thr=0, n=D, k=D, act=reg["cb"], act_count=t_dw, w=w_o,
                                         w_count=D * Dw)
                        m.next = "O_RUN"
            if multi:
                # The last context sums through the multi-threshold unit.
                with m.State("CTX_WAIT"):
                    m.d.comb += [self.step.eq(EngineStep.ATTENTION), mt_params.eq(1)]
                    with m.If(written["dc"]):
                        m.d.sync += gemm(thr=0, n=D, k=kd, act=reg["cb"], act_count=t_adw,
                                         w=w_o, w_count=Mux(tern, 2 * D * Dw, D * Dw))
                        m.next = "O_RUN"

            # Step 6: O through the residual unit.
            with m.State("O_RUN"):
                m.d.comb += self.step.eq(EngineStep.OUT)
                m.d.comb += launch()
                m.d.comb += rp_setup(gen=0, write=1, bits=int(not multi), soff=off["so"],
                                     toff=0 if multi else off["th_ffn"], region=reg["x1b"])
                m.next = "O_WAIT"
            with m.State("O_WAIT"):
                m.d.comb += self.step.eq(EngineStep.OUT)
                m.d.comb += to_res.eq(1)
                if multi:
                    # X1 quantised by a pass of its own (the multi-threshold unit's pace).
                    await_product(rp_left_zero, [], "X1_QUANT",
                                  rp_setup(gen=1, write=0, bits=0, soff=0, toff=0,
                                           region=reg["x1b"]) +
                                  mt_setup(tile_major=1, period=p.t, th=pb + off["th_ffn"],
                                           region=reg["x1b"], row_words=Dw, stride="d", n=D,
                                           copied=True))
                else:
                    await_product(rp_left_zero,
                                  gemm(thr=1, n=p.f, k=D, act=reg["x1b"], act_count=t_dw,
                                       w=w_1, w_count=f_dw, th=p.th_base + 3 * D,
                                       th_count=p.f), "F1_RUN")
            if multi:
                with m.State("X1_QUANT"):
                    m.d.comb += [self.step.eq(EngineStep.OUT), quantising.eq(1),
                                 mt_params.eq(1)]
                    with m.If(rp_left_zero & written["dc"]):
                        m.d.sync += gemm(thr=0, n=p.f, k=kd, act=reg["x1b"], act_count=t_adw,
                                         w=w_1, w_count=Mux(tern, 2 * f_dw, f_dw))
                        m.d.comb += mt_setup(tile_major=1, period=p.t, th=pb + off["t1"],
                                             region=reg["hb"], row_words=fw, stride="f", n=p.f,
                                             copied=True)
                        m.next = "F1_RUN"

            # Step 7: Hb rows.
            with m.State("F1_RUN"):
                m.d.comb += self.step.eq(EngineStep.FFN_UP)
                m.d.comb += launch()
                if not multi:
                    m.d.comb += [pk.cmd.valid.eq(1),
                                 pk.cmd.payload.t.eq(p.t), pk.cmd.payload.n.eq(p.f),
                                 pk.cmd.payload.base.eq(reg["hb"])]
                m.next = "F1_WAIT"
            with m.State("F1_WAIT"):
                m.d.comb += self.step.eq(EngineStep.FFN_UP)
                m.d.comb += packing.eq(1)
                if multi:
                    m.d.comb += mt_params.eq(1)
                    await_product(written["fc"],
                                  gemm(thr=0, n=D, k=Mux(tern, fw << (c.lane_bits + 1), p.f),
                                       act=reg["hb"], act_count=t_afw, w=w_2,
                                       w_count=Mux(tern, 2 * d_fw, d_fw), corr=1), "F2_RUN")
                else:
                    await_product(pk.done, gemm(thr=0, n=D, k=p.f, act=reg["hb"],
                                                act_count=t_fw, w=w_2, w_count=d_fw), "F2_RUN")

            # Step 8: Y through the residual unit.
            with m.State("F2_RUN"):
                m.d.comb += self.step.eq(EngineStep.FFN_DOWN)
                m.d.comb += launch()
                m.d.comb += rp_setup(gen=0, write=1, bits=0, soff=off["s2"], toff=0,
                                     region=reg["xb"])
                m.next = "F2_WAIT"
            with m.State("F2_WAIT"):
                m.d.comb += self.step.eq(EngineStep.FFN_DOWN)
                m.d.comb += to_res.eq(1)
                await_product(rp_left_zero, [], "DONE")

            with m.State("DONE"):
                m.d.comb += self.step.eq(EngineStep.DONE)
                m.d.sync += [self.done.eq(1), self.status.eq(err)]
                m.next = "IDLE"

        return m
