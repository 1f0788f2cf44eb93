"""The residual unit: steps 6 and 8 of the spec's layer, and the binarisation that follows them.

For each of ``width`` channels per beat: ``x1 = sat16(x + ((y * s) >> r))`` (exact product, then
an arithmetic shift, then int16 saturation), and the bit ``x1 >= t`` with the next step's
threshold (``th_ffn`` after step 6, the next layer's ``th_attn`` or ``th_out`` after step 8).

Streams: ``i`` carries ``x`` (int16), ``y`` (the GEMM's integers, ``y_width`` bits signed), ``s``
(int8), ``t`` (17-bit signed, the residual thresholds' range [-32768, 32768]) per channel, and a
``last`` flag passed through; ``o`` carries ``x1`` and ``bits``. The shift ``r`` is a static
input (one per layer). Latency 2 cycles, one beat per cycle; ``o.valid`` is a register,
``i.ready`` is ``o.ready`` or an empty output stage (the whole pipeline advances together).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ResidualUnit", "residual_in_layout", "residual_out_layout"]

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def residual_in_layout(width: int, y_width: int) -> data.StructLayout:
    return data.StructLayout({
        "x": data.ArrayLayout(signed(16), width),
        "y": data.ArrayLayout(signed(y_width), width),
        "s": data.ArrayLayout(signed(8), width),
        "t": data.ArrayLayout(signed(17), width),
        "last": 1,
    })


def residual_out_layout(width: int) -> data.StructLayout:
    return data.StructLayout({
        "x": data.ArrayLayout(signed(16), width),
        "bits": width,
        "last": 1,
    })


class ResidualUnit(wiring.Component):
    """Members
    -------
    i : In(stream.Signature(residual_in_layout(width, y_width)))
    o : Out(stream.Signature(residual_out_layout(width)))
    shift : In(range(16))
        The spec's ``r``; hold it constant while beats are in flight.
    """

    def __init__(self, *, width: int, y_width: int):
        for name, v, lo in (("width", width, 1), ("y_width", y_width, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"ResidualUnit {name} must be an integer of at least {lo}, "
                                 f"not {v!r}")
        if y_width > 24:
            raise ValueError(f"ResidualUnit y_width must be at most 24 (a dot product over at "
                             f"most 2**23 elements), not {y_width!r}")
        self._width, self._y_width = width, y_width
        super().__init__({
            "i": In(stream.Signature(residual_in_layout(width, y_width))),
            "o": Out(stream.Signature(residual_out_layout(width))),
            "shift": In(range(16)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._width
        p_width = self._y_width + 8
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]

        # Stage 1: the products, and x and t carried along.
        s1_valid, s1_last = Signal(), Signal()
        s1_prod = [Signal(signed(p_width), name=f"prod{c}") for c in range(w)]
        s1_x = [Signal(signed(16), name=f"x{c}") for c in range(w)]
        s1_t = [Signal(signed(17), name=f"t{c}") for c in range(w)]
        with m.If(adv):
            m.d.sync += [s1_valid.eq(self.i.valid), s1_last.eq(self.i.payload.last)]
            for c in range(w):
                m.d.sync += [s1_prod[c].eq(self.i.payload.y[c] * self.i.payload.s[c]),
                             s1_x[c].eq(self.i.payload.x[c]), s1_t[c].eq(self.i.payload.t[c])]

        # Stage 2: shift, add, saturate, compare.
        with m.If(adv):
            m.d.sync += [self.o.valid.eq(s1_valid), self.o.payload.last.eq(s1_last)]
            bits = []
            for c in range(w):
                total = Signal(signed(p_width + 2), name=f"sum{c}")
                x1 = Signal(signed(16), name=f"x1_{c}")
                m.d.comb += [total.eq(s1_x[c] + (s1_prod[c] >> self.shift)),
                             x1.eq(Mux(total > INT16_MAX, INT16_MAX,
                                       Mux(total < INT16_MIN, INT16_MIN, total)))]
                m.d.sync += self.o.payload.x[c].eq(x1)
                bits.append(x1 >= s1_t[c])
            m.d.sync += self.o.payload.bits.eq(Cat(*bits))
        return m
