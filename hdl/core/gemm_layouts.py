"""The GEMM core's payload layouts and counters, shared by the core's parts and its users."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from ...host.core_config import CORE_COUNTERS, CoreConfig, Op
from ...host.device_config import RESULT_INT_BYTES

__all__ = ["COUNTERS", "command_layout", "result_layout", "result_ints_word", "counters_layout",
           "tile_layout", "by_bits", "times_bits"]

#: Performance counters, each 32 bits, cleared when a command is accepted.
COUNTERS = CORE_COUNTERS


def counters_layout() -> data.StructLayout:
    """Layout of the ``counters`` output: one 32-bit count per name in ``COUNTERS``."""
    return data.StructLayout({name: 32 for name in COUNTERS})


def command_layout(c: CoreConfig) -> data.StructLayout:
    """Layout of a ``cmd`` beat for this configuration (``bits_m1``, the activation bits
    less one, only when ``max_bits > 1``)."""
    fields = {
        "op": Op, "threshold": 1,
        "t": unsigned(c.max_t.bit_length()),
        "n": unsigned(c.max_n.bit_length()),
        "k": unsigned(c.max_k.bit_length()),
    }
    if c.max_bits > 1:
        fields["bits_m1"] = unsigned(2)     # activation bits A - 1 (XOR only)
    return data.StructLayout(fields)


def by_bits(bits_m1, choices):
    """``choices[A - 1]`` for a command's 2-bit ``bits_m1`` (``A - 1``): a 4-way multiplexer."""
    c = list(choices)
    return Mux(bits_m1[1], Mux(bits_m1[0], c[3], c[2]), Mux(bits_m1[0], c[1], c[0]))


def times_bits(value, bits_m1):
    """``A * value`` for ``bits_m1 = A - 1`` (shifts and one add)."""
    return by_bits(bits_m1, [value, value << 1, (value << 1) + value, value << 2])


def result_layout(c: CoreConfig) -> data.StructLayout:
    """Layout of a ``result`` beat: ``ints`` (one row of C results, without thresholds) or
    ``bits`` (a whole R x C token tile, bit ``r * C + c``, with thresholds)."""
    return data.StructLayout({
        "ints": data.ArrayLayout(signed(c.result_width), c.cols),
        "bits": unsigned(c.rows * c.cols),
        "last": 1,
    })


def result_ints_word(m: Module, ints, name: str):
    """A result store word of ``ints`` (a beat's ``cols`` integers), each sign-extended to
    ``RESULT_INT_BYTES`` bytes, as the host reads them."""
    ext = []
    for i, v in enumerate(ints):
        x = Signal(signed(8 * RESULT_INT_BYTES), name=f"{name}{i}")
        m.d.comb += x.eq(v)
        ext.append(x)
    return Cat(*ext)


def tile_layout(c: CoreConfig) -> data.StructLayout:
    """The tags a chunk carries through the pipeline: its tile's rows and columns in use, the
    weight buffer half, and whether it is the last token tile and the last channel tile."""
    return data.StructLayout({
        "rows": range(c.rows + 1), "cols": range(c.cols + 1), "half": 1,
        "last_tt": 1, "last_nt": 1,
    })
