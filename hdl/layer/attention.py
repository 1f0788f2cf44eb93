"""Binary thresholded causal attention with the KV cache on chip: steps 3 to 5 of the spec.

The cache holds the ``Kb`` and ``Vb`` rows (``D = heads * head_dim`` bits each, bit ``d`` is
channel ``d``) of up to ``capacity`` tokens. For a query row ``Qb`` of token ``pos`` the unit
computes, for every cached token ``j <= pos`` and every head ``h``,
``S = dot(Qb_h, Kb_h[j]) = Dh - 2 * popcount(Qb_h ^ Kb_h[j])`` and ``A = S >= ta[h]``, sums
``C[d] = sum_j A[h(d), j] * (Vb[j, d] ? +1 : -1)`` (which is the spec's
``mdot(A, Vb[:, d]) = 2 * popcount(A & V) - popcount(A)``) and answers ``Cb = C >= tc``.

Prefill and decode are the same operation: append the new tokens' rows, then query each new
token with its position. All heads and channels work in parallel, one cached token per cycle:
a query of token ``pos`` takes ``pos + 1`` cycles plus 6.

The cache has ``slots`` independent parts (one per layer of a model), each of ``capacity``
tokens; the static input ``slot`` picks the part that appends and queries use, ``length`` is that
part's token count, and ``clear_slot`` (one cycle) empties that part only.

Streams (``lib.stream``): ``kv`` appends one token (refused rows are not written: when the cache
is full the row is taken, dropped, and ``overflow`` stays set until ``clear``); ``q`` takes a
query; ``c`` answers each query with ``bits`` and ``error`` (set, with zero bits, when ``pos`` is
not a cached token). Appends and queries are served one at a time, appends first. ``ta``, ``tc``
are static inputs (hold them while a query runs). ``clear`` (one cycle) empties every slot.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from ..lib.popcount import popcount_tree

__all__ = ["AttentionUnit", "kv_layout", "q_layout", "c_layout"]


def kv_layout(d: int) -> data.StructLayout:
    """A token's key and value bits (``kv``)."""
    return data.StructLayout({"k": d, "v": d})


def q_layout(d: int, capacity: int) -> data.StructLayout:
    """A token's query bits and its position (``q``)."""
    return data.StructLayout({"q": d, "pos": range(capacity)})


def c_layout(d: int) -> data.StructLayout:
    """A query's context bits, and whether it failed (``c``)."""
    return data.StructLayout({"bits": d, "error": 1})


class AttentionUnit(wiring.Component):
    """Members
    -------
    kv : In(stream.Signature({"k": D, "v": D}))
    q : In(stream.Signature({"q": D, "pos": range(capacity)}))
    c : Out(stream.Signature({"bits": D, "error": 1}))
    ta : In(ArrayLayout(signed, heads));  tc : In(ArrayLayout(signed(16), D))
    clear : In(1);  length : Out(range(capacity + 1));  overflow : Out(1)
    slot : In(range(slots));  clear_slot : In(1)
    """

    def __init__(self, *, heads: int, head_dim: int, capacity: int, slots: int = 1):
        for name, v in (("heads", heads), ("head_dim", head_dim), ("capacity", capacity),
                        ("slots", slots)):
            check_count(f"AttentionUnit {name}", v)
        if capacity > 32767:
            raise ValueError(f"AttentionUnit capacity must be at most 32767 (the context sum is "
                             f"compared with int16 thresholds), not {capacity!r}")
        self._h, self._dh, self._cap, self._slots = heads, head_dim, capacity, slots
        d = heads * head_dim
        ta_shape = signed((head_dim + 1).bit_length() + 1)   # [-Dh, Dh + 1]
        super().__init__({
            "kv": In(stream.Signature(kv_layout(d))),
            "q": In(stream.Signature(q_layout(d, capacity))),
            "c": Out(stream.Signature(c_layout(d))),
            "ta": In(data.ArrayLayout(ta_shape, heads)),
            "tc": In(data.ArrayLayout(signed(16), d)),
            "clear": In(1),
            "length": Out(range(capacity + 1)),
            "overflow": Out(1),
            "slot": In(range(slots)),
            "clear_slot": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        h_n, dh, cap, n_slots = self._h, self._dh, self._cap, self._slots
        d = h_n * dh
        m.submodules.keys = keys = memory.Memory(shape=d, depth=cap * n_slots, init=[])
        m.submodules.values = values = memory.Memory(shape=d, depth=cap * n_slots, init=[])
        k_w, k_r = keys.write_port(), keys.read_port()
        v_w, v_r = values.write_port(), values.read_port()

        lengths = Array(Signal(range(cap + 1), name=f"length{i}") for i in range(n_slots))
        length = lengths[self.slot]
        slot_base = Signal(range(cap * n_slots))
        m.d.comb += [self.length.eq(length), slot_base.eq(self.slot * cap)]
        with m.If(self.clear):
            m.d.sync += [ln.eq(0) for ln in lengths] + [self.overflow.eq(0)]
        with m.Elif(self.clear_slot):
            m.d.sync += length.eq(0)

        q = Signal(d)
        pos = Signal(range(cap))
        beyond = Signal()                          # pos >= length: the query is refused
        j = Signal(range(cap + 1))
        acc_shape = signed((cap + 1).bit_length() + 1)
        acc = [Signal(acc_shape, name=f"c{i}") for i in range(d)]

        # Scan pipeline: read token j (cycle 0), register q XOR k (cycle 1: the block RAM's
        # output goes straight to a register), scores and mask bits (cycle 2), accumulate
        # (cycle 3).
        rd_valid = Signal()
        x_valid = Signal()
        x_k = Signal(d)
        x_v = Signal(d)
        a_valid = Signal()
        a_bits = Signal(h_n)
        a_v = Signal(d)
        m.d.sync += [rd_valid.eq(0), x_valid.eq(0), a_valid.eq(0)]
        m.d.comb += [k_r.addr.eq(slot_base + j), v_r.addr.eq(slot_base + j),
                     k_r.en.eq(1), v_r.en.eq(1)]

        scores = []
        for h in range(h_n):
            sl = slice(h * dh, (h + 1) * dh)
            mism = popcount_tree(m, [x_k[sl][i] for i in range(dh)], name=f"s{h}")
            s = Signal(signed(dh.bit_length() + 2), name=f"score{h}")
            m.d.comb += s.eq(dh - 2 * mism)
            scores.append(s >= self.ta[h])
        with m.If(rd_valid):
            m.d.sync += [x_valid.eq(1), x_k.eq(q ^ k_r.data), x_v.eq(v_r.data)]
        with m.If(x_valid):
            m.d.sync += [a_valid.eq(1), a_bits.eq(Cat(*scores)), a_v.eq(x_v)]
        with m.If(a_valid):
            for i in range(d):
                with m.If(a_bits[i // dh]):
                    m.d.sync += acc[i].eq(Mux(a_v[i], acc[i] + 1, acc[i] - 1))

        with m.FSM():
            with m.State("IDLE"):
                busy_clear = self.clear | self.clear_slot
                m.d.comb += self.kv.ready.eq(~busy_clear)
                with m.If(self.kv.valid & ~busy_clear):
                    with m.If(length < cap):
                        m.d.comb += [k_w.addr.eq(slot_base + length),
                                     k_w.data.eq(self.kv.payload.k),
                                     k_w.en.eq(1), v_w.addr.eq(slot_base + length),
                                     v_w.data.eq(self.kv.payload.v), v_w.en.eq(1)]
                        m.d.sync += length.eq(length + 1)
                    with m.Else():
                        m.d.sync += self.overflow.eq(1)
                with m.Elif(self.q.valid & ~busy_clear):
                    m.d.comb += self.q.ready.eq(1)
                    m.d.sync += [q.eq(self.q.payload.q), pos.eq(self.q.payload.pos), j.eq(0),
                                 beyond.eq(self.q.payload.pos >= length)]
                    m.d.sync += [a.eq(0) for a in acc]
                    m.next = "CHECK"
            # (A cycle of its own: the comparison with the length is registered, not on the
            # path from the query's position to the answer's registers; timing.)
            with m.State("CHECK"):
                with m.If(beyond):
                    m.d.sync += [self.c.payload.error.eq(1), self.c.payload.bits.eq(0),
                                 self.c.valid.eq(1)]
                    m.next = "ANSWER"
                with m.Else():
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.sync += [rd_valid.eq(1), j.eq(j + 1)]
                with m.If(j == pos):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~rd_valid & ~x_valid & ~a_valid):
                    m.d.sync += [self.c.payload.error.eq(0), self.c.valid.eq(1),
                                 self.c.payload.bits.eq(
                                     Cat(*[acc[i] >= self.tc[i] for i in range(d)]))]
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                with m.If(self.c.ready):
                    m.d.sync += self.c.valid.eq(0)
                    m.next = "IDLE"
        return m
