"""The layer engine's level packer: A-bit levels into the activation store as bit-planes.

Each beat on ``i`` (``onebit.hdl.layer.multi_threshold.levels_layout``) holds ``cols`` levels,
the word of their row's top plane (``addr``) and their group in the word (``gsel``). The
packer writes the beat's planes one a cycle, top plane (bit ``A - 1``) first, plane ``p`` at
``addr + p * plane_words`` (the layout the GEMM core and the GEMV unit read), each write
enabling one group of ``cols`` bits. With ``copy_words`` (not 0) each plane is written twice,
the copy ``copy_words`` further on (a row that products read against ternary weight rows, whose
two planes lie side by side). So a beat takes A cycles (2 A with copies); ``i.ready`` is high
in its last write's cycle. ``setup`` (one cycle) takes ``plane_words`` and ``copy_words`` for
the pass and clears ``written``, which counts the beats written since; ``bits_m1`` is static.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from .multi_threshold import levels_layout

__all__ = ["LevelPacker"]


class LevelPacker(wiring.Component):
    """Members
    -------
    setup : In(1);  plane_words, copy_words : In(range(act_words + 1))
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
            "setup": In(1), "plane_words": In(range(dev.act_words + 1)),
            "copy_words": In(range(dev.act_words + 1)),
            "bits_m1": In(range(ly.max_bits)),
            "i": In(stream.Signature(levels_layout(dev))),
            "act_waddr": Out(range(dev.act_words)), "act_wdata": Out(c.lanes),
            "act_wen": Out(c.lanes // c.cols), "written": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        C, gpw = c.cols, c.lanes // c.cols
        plane = Signal(range(dev.layer.max_bits))
        offset = Signal(range(dev.layer.max_bits * (dev.act_words + 1)))
        bit = Signal(range(dev.layer.max_bits))
        plane_words = Signal.like(self.plane_words)
        copy_words = Signal.like(self.copy_words)
        copy = Signal()                              # writing a plane's copy
        lv = self.i.payload.levels
        m.d.comb += [bit.eq(self.bits_m1 - plane),
                     self.act_waddr.eq(self.i.payload.addr + offset + Mux(copy, copy_words, 0)),
                     self.act_wdata.eq(Cat(lv[ch].bit_select(bit, 1)
                                           for ch in range(C)).replicate(gpw)),
                     self.i.ready.eq((plane == self.bits_m1) & (copy | (copy_words == 0)))]
        with m.If(self.i.valid):
            m.d.comb += self.act_wen.eq(1 << self.i.payload.gsel)
            with m.If(self.i.ready):
                m.d.sync += [plane.eq(0), offset.eq(0), copy.eq(0),
                             self.written.eq(self.written + 1)]
            with m.Elif(~copy & (copy_words != 0)):
                m.d.sync += copy.eq(1)
            with m.Else():
                m.d.sync += [plane.eq(plane + 1), offset.eq(offset + plane_words), copy.eq(0)]
        with m.If(self.setup):
            m.d.sync += [plane.eq(0), offset.eq(0), copy.eq(0), self.written.eq(0),
                         plane_words.eq(self.plane_words), copy_words.eq(self.copy_words)]
        return m
