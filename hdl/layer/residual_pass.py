"""The layer engine's residual pass: residual rows through the residual unit, back in place.

One pass covers ``beats`` beats (``T * D / cols``) in the core's order (group of ``cols``
channels outer, token inner, ``t`` tokens). ``setup`` (one cycle) begins a pass with
``config``: ``gen`` (the pass makes its own beats, ``y = 0``: the binarisation of step 1; else
it takes the GEMM's integers from ``y``), ``write`` (X1 back into the residual store),
``bits`` (X1's bits into the activation store region ``region``), and the parameter rows of
the scale (``soff``) and the threshold (``toff``) from ``param_base``.

Each beat reads X (residual store, from ``res_base``), the scale and the threshold
(parameter store ports 0 and 1) the cycle it fires; the residual unit takes them a cycle
later, and two cycles after that X1 is written back (``res_w*``) and its bits offered on
``act_w*`` (one enable per ``cols``-bit group of an activation word). A beat fires each cycle
``generate`` is high while generated beats remain, or each beat ``y`` carries (``y.ready`` is
always high: the pass never stalls). ``done`` is high once every beat of the pass is out of
the unit. ``fired`` is high the cycle a beat fires; ``x_valid`` the cycle its X1 leaves the
unit (on ``resid_wdata``, written back only with ``write``): the layer engine's
multi-threshold unit takes X from there. With ``registered`` the reads' data pass a register
before the unit (the parameter store's read data otherwise reaches its multipliers in the
cycle), one cycle more of latency.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import PARAM_BITS, DeviceConfig
from ...host.layer_layout import param_words_per_layer
from ..core.gemm_layouts import result_layout
from .residual import ResidualUnit

__all__ = ["ResidualPass", "pass_layout"]


def pass_layout(dev: DeviceConfig) -> data.StructLayout:
    """A pass's ``config``."""
    pw = param_words_per_layer(dev)
    return data.StructLayout({"gen": 1, "write": 1, "bits": 1, "soff": range(pw + 1),
                              "toff": range(pw + 1), "region": range(dev.act_words + 1)})


class ResidualPass(wiring.Component):
    """Members
    -------
    setup : In(1);  config : In(pass_layout(dev))
    t : In(range(max_t + 1));  beats : In(32);  shift : In(range(16))
    res_base : In(32);  param_base : In(range(param_words))
    generate : In(1);  y : In(stream.Signature(result_layout(core)))
    done : Out(1);  fired : Out(1);  x_valid : Out(1)
    resid_raddr, resid_ren : Out;  resid_rdata : In(16 * cols)
    par_raddr0, par_ren0, par_raddr1, par_ren1 : Out;  par_rdata0, par_rdata1 : In
    resid_waddr, resid_wdata, resid_wen : Out
    act_waddr, act_wdata : Out;  act_wen : Out(lanes // cols)
    """

    def __init__(self, dev: DeviceConfig, *, registered: bool = False):
        check_device(dev, layer_for="ResidualPass")
        if not isinstance(registered, bool):
            raise TypeError(f"ResidualPass registered must be a bool, not {registered!r}")
        self._dev, self._registered = dev, registered
        c, ly = dev.core, dev.layer
        super().__init__({
            "setup": In(1), "config": In(pass_layout(dev)),
            "t": In(range(c.max_t + 1)), "beats": In(32), "shift": In(range(16)),
            "res_base": In(32), "param_base": In(range(ly.param_words)),
            "generate": In(1), "y": In(stream.Signature(result_layout(c))), "done": Out(1),
            "fired": Out(1), "x_valid": Out(1),
            "resid_raddr": Out(range(ly.res_words)), "resid_ren": Out(1),
            "resid_rdata": In(16 * c.cols),
            "par_raddr0": Out(range(ly.param_words)), "par_ren0": Out(1),
            "par_rdata0": In(PARAM_BITS * c.cols),
            "par_raddr1": Out(range(ly.param_words)), "par_ren1": Out(1),
            "par_rdata1": In(PARAM_BITS * c.cols),
            "resid_waddr": Out(range(ly.res_words)), "resid_wdata": Out(16 * c.cols),
            "resid_wen": Out(1),
            "act_waddr": Out(range(dev.act_words)), "act_wdata": Out(c.lanes),
            "act_wen": Out(c.lanes // c.cols),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c, ly = self._dev, self._dev.core, self._dev.layer
        C, L = c.cols, c.lanes
        D = ly.d_model
        Dw, Dc = D // L, D // C
        gpw = L // C                                 # C-bit groups per activation word
        PW = param_words_per_layer(dev)
        m.submodules.residual = resu = ResidualUnit(width=C, y_width=c.result_width)
        m.d.comb += resu.shift.eq(self.shift[:4])

        rp_gen, rp_write, rp_bits = Signal(), Signal(), Signal()
        rp_soff, rp_toff = Signal(range(PW + 1)), Signal(range(PW + 1))
        rp_tok = Signal(range(c.max_t + 1))
        rp_grp = Signal(range(Dc + 1))
        rp_left = Signal(32)                       # beats still to come out of the unit
        ra, ra_col = Signal(range(ly.res_words + Dc + 1)), Signal(range(ly.res_words + Dc + 1))
        aa, aa_col = Signal(range(dev.act_words + Dw + 1)), Signal(range(dev.act_words + Dw + 1))
        gsel = Signal(range(gpw))
        fire = Signal()
        gen_left = Signal(32)
        cfg = self.config
        m.d.comb += self.done.eq(rp_left == 0)

        # Beats: made here while ``generate`` (y = 0), else the GEMM's, never stalled.
        m.d.comb += self.y.ready.eq(1)
        with m.If(self.generate):
            m.d.comb += fire.eq(gen_left != 0)
            with m.If(gen_left != 0):
                m.d.sync += gen_left.eq(gen_left - 1)
        with m.Else():
            m.d.comb += fire.eq(self.y.valid)

        pb = self.param_base
        m.d.comb += [self.resid_raddr.eq(ra), self.resid_ren.eq(fire),
                     self.par_raddr0.eq(pb + rp_soff + rp_grp), self.par_ren0.eq(fire),
                     self.par_raddr1.eq(pb + rp_toff + rp_grp), self.par_ren1.eq(fire)]
        with m.If(fire):
            with m.If(rp_tok == self.t - 1):
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
        m.d.sync += [b_valid.eq(fire), d2_meta.eq(d1_meta)]
        with m.If(fire):
            m.d.sync += [b_y.eq(Mux(rp_gen, 0, self.y.payload.ints)),
                         b_meta.ra.eq(ra), b_meta.aa.eq(aa), b_meta.gsel.eq(gsel)]
        x_in = data.View(data.ArrayLayout(signed(16), C), self.resid_rdata)
        s_in = data.View(data.ArrayLayout(signed(PARAM_BITS), C), self.par_rdata0)
        t_in = data.View(data.ArrayLayout(signed(PARAM_BITS), C), self.par_rdata1)
        if self._registered:
            # Stage R: the reads' data registered before the unit's multipliers.
            r_valid, r_y, r_meta = Signal(), Signal.like(b_y), Signal(meta)
            r_x, r_s, r_t = Signal.like(x_in), Signal.like(s_in), Signal.like(t_in)
            m.d.sync += r_valid.eq(b_valid)
            with m.If(b_valid):
                m.d.sync += [r_y.eq(b_y), r_meta.eq(b_meta), r_x.eq(x_in), r_s.eq(s_in),
                             r_t.eq(t_in)]
            b_valid, b_y, b_meta, x_in, s_in, t_in = r_valid, r_y, r_meta, r_x, r_s, r_t
        m.d.sync += d1_meta.eq(b_meta)                # the unit's input stage's beat
        m.d.comb += [resu.i.valid.eq(b_valid), resu.o.ready.eq(1)]
        for ch in range(C):
            m.d.comb += [resu.i.payload.x[ch].eq(x_in[ch]), resu.i.payload.y[ch].eq(b_y[ch]),
                         resu.i.payload.s[ch].eq(Mux(rp_gen, 0, s_in[ch][:8].as_signed())),
                         resu.i.payload.t[ch].eq(t_in[ch])]
        # Output: X1 back in place, its bits into the activation store.
        m.d.comb += [self.fired.eq(fire), self.x_valid.eq(resu.o.valid)]
        m.d.comb += [self.resid_waddr.eq(d2_meta.ra), self.resid_wdata.eq(resu.o.payload.x),
                     self.resid_wen.eq(resu.o.valid & rp_write)]
        with m.If(resu.o.valid):
            m.d.sync += rp_left.eq(rp_left - 1)
        with m.If(resu.o.valid & rp_bits):
            m.d.comb += [self.act_waddr.eq(d2_meta.aa),
                         self.act_wdata.eq(resu.o.payload.bits.replicate(gpw)),
                         self.act_wen.eq(1 << d2_meta.gsel)]
        # A new pass (last: it wins over the beats' updates, though none are in flight then).
        with m.If(self.setup):
            m.d.sync += [rp_gen.eq(cfg.gen), rp_write.eq(cfg.write), rp_bits.eq(cfg.bits),
                         rp_soff.eq(cfg.soff), rp_toff.eq(cfg.toff), rp_tok.eq(0),
                         rp_grp.eq(0), rp_left.eq(self.beats), gen_left.eq(self.beats),
                         ra.eq(self.res_base), ra_col.eq(self.res_base), aa.eq(cfg.region),
                         aa_col.eq(cfg.region), gsel.eq(0)]
        return m
