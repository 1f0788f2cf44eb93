"""Binary thresholded causal attention with the KV cache on chip: steps 3 to 5 of the spec.

The cache holds the ``Kb`` and ``Vb`` rows (``D = heads * head_dim`` bits each, bit ``d`` is
channel ``d``) of up to ``capacity`` tokens. For a query row ``Qb`` of token ``pos`` the unit
computes, for every cached token ``j <= pos`` and every head ``h``,
``S = dot(Qb_h, Kb_h[j]) = Dh - 2 * popcount(Qb_h ^ Kb_h[j])`` and ``A = S >= ta[h]``, sums
``C[d] = sum_j A[h(d), j] * (Vb[j, d] ? +1 : -1)`` (which is the spec's
``mdot(A, Vb[:, d]) = 2 * popcount(A & V) - popcount(A)``) and answers ``Cb = C >= tc``.

Prefill and decode are the same operation: append the new tokens' rows, then query each new
token with its position. All heads and channels work in parallel, one cached token per cycle:
a query of token ``pos`` takes ``pos + 1`` cycles plus 6. With ``scan_tokens=2`` (one bit
only) the cache has a second read port and the scan takes tokens ``j`` and ``j + 1`` in a
cycle: ``ceil((pos + 1) / 2)`` cycles plus 6.

The cache has ``slots`` independent parts (one per layer of a model), each of ``capacity``
tokens; the static input ``slot`` picks the part that appends and queries use, ``length`` is that
part's token count, and ``clear_slot`` (one cycle) empties that part only.

Multi-bit activations (``bits`` = A_m > 1; the static input ``bits_m1`` is this command's A - 1,
set by a query's first cycle): the rows are A_m bit-planes of D bits, plane ``i`` holding bit
``i`` of every level (planes from A on are ignored). The score is the numerics' ``aprod`` of the
levels' values, ``sum_{i,j<A} 2^(i+j) (Dh - 2 popcount(Q_i ^ K_j))`` per head, the context sums
the values ``2 v - L`` of the masked V levels, and the answer on ``c`` is the context sums
themselves (``ints``), which the layer engine's multi-threshold unit quantises. A query then
takes ``pos + 1`` cycles plus 9 (the plane products have two register stages of their own), and
the unit takes and scans the next query while an answer waits on ``c`` (it answers that one once
the first is taken).

Streams (``lib.stream``): ``kv`` appends one token (refused rows are not written: when the cache
is full the row is taken, dropped, and ``overflow`` stays set until ``clear``); ``q`` takes a
query; ``c`` answers each query with ``bits`` and ``error`` (set, with zero bits, when ``pos`` is
not a cached token). Appends and queries are served one at a time, appends first. ``ta``, ``tc``
are static inputs (hold them while a query runs). ``clear`` (one cycle) empties every slot.
A clear takes effect after a transfer in its cycle: an append's row is dropped with the rest, and
a query is answered from the cache as it was.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from ..lib.family import family
from ..lib.popcount import popcount_tree
from ..lib.unmerged_register import unmerged_registers

__all__ = ["AttentionUnit", "kv_layout", "q_layout", "c_layout"]


def kv_layout(d: int, bits: int = 1) -> data.StructLayout:
    """A token's key and value planes (``kv``)."""
    return data.StructLayout({"k": d * bits, "v": d * bits})


def q_layout(d: int, capacity: int, bits: int = 1) -> data.StructLayout:
    """A token's query planes and its position (``q``)."""
    return data.StructLayout({"q": d * bits, "pos": range(capacity)})


def context_shape(capacity: int, bits: int):
    """A context sum's shape: ``capacity`` values in [-L, L]."""
    return signed((((1 << bits) - 1) * (capacity + 1)).bit_length() + 1)


def c_layout(d: int, capacity: int = 1, bits: int = 1) -> data.StructLayout:
    """A query's context bits (``ints``: its sums, with multi-bit activations), and whether it
    failed (``c``)."""
    if bits > 1:
        return data.StructLayout({"ints": data.ArrayLayout(context_shape(capacity, bits), d),
                                  "error": 1})
    return data.StructLayout({"bits": d, "error": 1})


class AttentionUnit(wiring.Component):
    """Members
    -------
    kv : In(stream.Signature({"k": D, "v": D}))
    q : In(stream.Signature({"q": D, "pos": range(capacity)}))
    c : Out(stream.Signature({"bits": D, "error": 1}))
    ta : In(ArrayLayout(signed, heads));  tc : In(ArrayLayout(signed(16), D)) (one bit only)
    bits_m1 : In(range(bits)) (multi-bit only)
    clear : In(1);  length : Out(range(capacity + 1));  overflow : Out(1)
    slot : In(range(slots));  clear_slot : In(1)
    """

    def __init__(self, *, heads: int, head_dim: int, capacity: int, slots: int = 1,
                 bits: int = 1, scan_tokens: int = 1):
        for name, v in (("heads", heads), ("head_dim", head_dim), ("capacity", capacity),
                        ("slots", slots)):
            check_count(f"AttentionUnit {name}", v)
        if capacity > 32767:
            raise ValueError(f"AttentionUnit capacity must be at most 32767 (the context sum is "
                             f"compared with int16 thresholds), not {capacity!r}")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 4:
            raise ValueError(f"AttentionUnit bits must be an integer from 1 to 4, not {bits!r}")
        if scan_tokens not in (1, 2) or isinstance(scan_tokens, bool):
            raise ValueError(f"AttentionUnit scan_tokens must be 1 or 2, not {scan_tokens!r}")
        if scan_tokens == 2 and bits != 1:
            raise ValueError(f"AttentionUnit scan_tokens=2 needs bits=1 (the multi-bit scan "
                             f"reads a token a cycle), not bits={bits!r}")
        self._scan_tokens = scan_tokens
        lv = (1 << bits) - 1
        if lv * capacity > 32766:
            raise ValueError(f"AttentionUnit capacity must be at most {32766 // lv} at {bits} "
                             f"bits (context sums are compared with 16-bit thresholds), not "
                             f"{capacity!r}")
        self._h, self._dh, self._cap, self._slots = heads, head_dim, capacity, slots
        self._bits = bits
        d = heads * head_dim
        ta_shape = signed((lv * lv * head_dim + 1).bit_length() + 1)   # [-L^2 Dh, L^2 Dh + 1]
        ports = {
            "kv": In(stream.Signature(kv_layout(d, bits))),
            "q": In(stream.Signature(q_layout(d, capacity, bits))),
            "c": Out(stream.Signature(c_layout(d, capacity, bits))),
            "ta": In(data.ArrayLayout(ta_shape, heads)),
        }
        if bits > 1:
            ports["bits_m1"] = In(range(bits))
        else:
            ports["tc"] = In(data.ArrayLayout(signed(16), d))
        super().__init__(ports | {
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
        m.submodules.keys = keys = memory.Memory(shape=d * self._bits, depth=cap * n_slots,
                                                 init=[])
        m.submodules.values = values = memory.Memory(shape=d * self._bits, depth=cap * n_slots,
                                                     init=[])
        k_w, k_r = keys.write_port(), keys.read_port()
        v_w, v_r = values.write_port(), values.read_port()
        two = self._scan_tokens == 2
        if two:                                    # token j + 1, read beside token j
            k_r2, v_r2 = keys.read_port(), values.read_port()

        lengths = Array(Signal(range(cap + 1), name=f"length{i}") for i in range(n_slots))
        length = lengths[self.slot]
        slot_base = Signal(range(cap * n_slots))
        m.d.comb += [self.length.eq(length), slot_base.eq(self.slot * cap)]

        nb = self._bits
        q = Signal(d * nb)
        pos = Signal(range(cap))
        beyond = Signal()                          # pos >= length: the query is refused
        j = Signal(range(cap + 1))
        acc_shape = context_shape(cap, nb)
        acc = [Signal(acc_shape, name=f"c{i}") for i in range(d)]
        m.d.comb += [k_r.addr.eq(slot_base + j), v_r.addr.eq(slot_base + j),
                     k_r.en.eq(1), v_r.en.eq(1)]
        rd_valid2 = Signal()                       # token j + 1 is read too (j + 1 <= pos)
        if two:
            m.d.comb += [k_r2.addr.eq(slot_base + j + 1), v_r2.addr.eq(slot_base + j + 1),
                         k_r2.en.eq(1), v_r2.en.eq(1)]
        # The write ports' address and data do not depend on the handshake, only their
        # enables do (timing: gating the data put the append's handshake on a net to every
        # data input of the cache's block RAMs).
        m.d.comb += [k_w.addr.eq(slot_base + length), k_w.data.eq(self.kv.payload.k),
                     v_w.addr.eq(slot_base + length), v_w.data.eq(self.kv.payload.v)]
        rd_valid = Signal()
        if two:
            idle = self._scan_binary_two(m, q, rd_valid, rd_valid2, k_r, v_r, k_r2, v_r2, acc)
        elif nb == 1:
            idle = self._scan_binary(m, q, rd_valid, k_r, v_r, acc)
        else:
            idle = self._scan_planes(m, q, rd_valid, k_r, v_r, acc, family(platform))

        # Multi-bit answers are taken over many cycles (a beat of sums per group of channels):
        # the unit scans the next query meanwhile, and answers it once the last is taken.
        answered = "ANSWER" if nb == 1 else "IDLE"
        free = 1 if nb == 1 else ~self.c.valid
        if nb > 1:
            with m.If(self.c.ready):
                m.d.sync += self.c.valid.eq(0)
            # The sums follow ``acc`` while no answer waits, and hold while one does: the
            # answer's registers are enabled by ``c.valid`` alone (timing: their enable, the
            # scan's end decided by the state's logic, was one net to every bit of them). The
            # sums are final when ``c.valid`` is set; a refused query's are 0 (``acc`` cleared).
            with m.If(~self.c.valid):
                m.d.sync += [self.c.payload.ints[i].eq(acc[i]) for i in range(d)]
        with m.FSM():
            with m.State("IDLE"):
                # The query's registers follow the stream and the sums are cleared while the
                # unit is idle, so their enables are the state alone (timing: the handshake,
                # fanned out to every bit of them, was the ULX3S-85F's critical path). The
                # handshake does not see ``clear``: a clear is ordered after a transfer in its
                # cycle (below).
                m.d.sync += [q.eq(self.q.payload.q), pos.eq(self.q.payload.pos), j.eq(0),
                             beyond.eq(self.q.payload.pos >= length)]
                m.d.sync += [a.eq(0) for a in acc]
                m.d.comb += self.kv.ready.eq(1)
                with m.If(self.kv.valid):
                    with m.If(length < cap):
                        m.d.comb += [k_w.en.eq(1), v_w.en.eq(1)]
                        m.d.sync += length.eq(length + 1)
                    with m.Else():
                        m.d.sync += self.overflow.eq(1)
                with m.Elif(self.q.valid):
                    m.d.comb += self.q.ready.eq(1)
                    m.next = "CHECK"
            # (A cycle of its own: the comparison with the length is registered, not on the
            # path from the query's position to the answer's registers; timing.)
            with m.State("CHECK"):
                with m.If(beyond):
                    with m.If(free):
                        m.d.sync += [self.c.payload.error.eq(1), self.c.valid.eq(1)]
                        if nb == 1:
                            m.d.sync += self.c.payload.bits.eq(0)
                        m.next = answered
                with m.Else():
                    m.next = "SCAN"
            with m.State("SCAN"):
                if two:
                    m.d.sync += [rd_valid.eq(1), rd_valid2.eq(j != pos), j.eq(j + 2)]
                    with m.If((j == pos) | (j + 1 == pos)):
                        m.next = "DRAIN"
                else:
                    m.d.sync += [rd_valid.eq(1), j.eq(j + 1)]
                    with m.If(j == pos):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~rd_valid & idle & free):
                    m.d.sync += [self.c.payload.error.eq(0), self.c.valid.eq(1)]
                    if nb == 1:
                        m.d.sync += self.c.payload.bits.eq(
                            Cat(*[acc[i] >= self.tc[i] for i in range(d)]))
                    m.next = answered
            with m.State("ANSWER"):
                with m.If(self.c.ready):
                    m.d.sync += self.c.valid.eq(0)
                    m.next = "IDLE"
        # After the state machine, so that a clear wins over an append in its cycle.
        with m.If(self.clear):
            m.d.sync += [ln.eq(0) for ln in lengths] + [self.overflow.eq(0)]
        with m.Elif(self.clear_slot):
            m.d.sync += length.eq(0)
        return m

    def _scan_binary(self, m, q, rd_valid, k_r, v_r, acc):
        """Scan pipeline, one bit: read token j (cycle 0), register q XOR k (cycle 1: the block
        RAM's output goes straight to a register), scores and mask bits (cycle 2), accumulate
        (cycle 3). Returns the signal that is high when the stages after the read are empty."""
        h_n, dh = self._h, self._dh
        d = h_n * dh
        x_valid = Signal()
        x_k = Signal(d)
        x_v = Signal(d)
        a_valid = Signal()
        a_bits = Signal(h_n)
        a_v = Signal(d)
        m.d.sync += [rd_valid.eq(0), x_valid.eq(0), a_valid.eq(0)]
        with m.If(rd_valid):
            m.d.sync += [x_valid.eq(1), x_k.eq(q ^ k_r.data), x_v.eq(v_r.data)]
        with m.If(x_valid):
            m.d.sync += [a_valid.eq(1), a_bits.eq(self._masks(m, x_k, "")), a_v.eq(x_v)]
        with m.If(a_valid):
            for i in range(d):
                with m.If(a_bits[i // dh]):
                    m.d.sync += acc[i].eq(Mux(a_v[i], acc[i] + 1, acc[i] - 1))
        return ~x_valid & ~a_valid

    def _masks(self, m, xk, tag):
        """The heads' mask bits of one token, ``score >= ta`` with ``score = Dh - 2 mism``
        from the popcount of ``xk`` (``q ^ k``) per head."""
        out = []
        for h in range(self._h):
            sl = slice(h * self._dh, (h + 1) * self._dh)
            mism = popcount_tree(m, [xk[sl][i] for i in range(self._dh)], name=f"s{h}{tag}")
            s = Signal(signed(self._dh.bit_length() + 2), name=f"score{h}{tag}")
            m.d.comb += s.eq(self._dh - 2 * mism)
            out.append(s >= self.ta[h])
        return Cat(*out)

    def _scan_binary_two(self, m, q, rd_valid, rd_valid2, k_r, v_r, k_r2, v_r2, acc):
        """The one-bit scan at two tokens a cycle: tokens j and j + 1 read on two ports
        (cycle 0), both XORs registered (cycle 1), both tokens' mask bits (cycle 2), and each
        sum takes both tokens' +-1 at once (cycle 3). Token j + 1 counts only if it was read
        (``rd_valid2``: ``j + 1 <= pos``). Returns the signal that is high when the stages
        after the read are empty."""
        h_n, dh = self._h, self._dh
        d = h_n * dh
        x_valid, x_valid2, a_valid = Signal(), Signal(), Signal()
        x_k, x_v, x_k2, x_v2 = (Signal(d, name=n) for n in ("x_k", "x_v", "x_k2", "x_v2"))
        a_bits, a_bits2 = Signal(h_n), Signal(h_n)
        a_v, a_v2 = Signal(d), Signal(d)
        m.d.sync += [rd_valid.eq(0), rd_valid2.eq(0), x_valid.eq(0), a_valid.eq(0)]

        with m.If(rd_valid):
            m.d.sync += [x_valid.eq(1), x_valid2.eq(rd_valid2), x_k.eq(q ^ k_r.data),
                         x_v.eq(v_r.data), x_k2.eq(q ^ k_r2.data), x_v2.eq(v_r2.data)]
        with m.If(x_valid):
            m.d.sync += [a_valid.eq(1), a_bits.eq(self._masks(m, x_k, "a")),
                         a_bits2.eq(self._masks(m, x_k2, "b") & x_valid2.replicate(h_n)),
                         a_v.eq(x_v), a_v2.eq(x_v2)]
        with m.If(a_valid):
            for i in range(d):
                h = i // dh
                first = Mux(a_bits[h], Mux(a_v[i], 1, -1), 0)
                second = Mux(a_bits2[h], Mux(a_v2[i], 1, -1), 0)
                m.d.sync += acc[i].eq(acc[i] + first + second)
        return ~x_valid & ~a_valid

    def _scan_planes(self, m, q, rd_valid, k_r, v_r, acc, fam):
        """Scan pipeline, A-bit planes: read token j (cycle 0), register its planes (cycle 1),
        the carry-save trees of every plane pair's popcount per head (cycle 2), their final
        adds (cycle 3), the partial sums (cycle 4), the mask bits (cycle 5), accumulate (cycle
        6). (Timing: the XORs, a tree of 32 bits and its adder in one cycle limited the
        ULX3S-85F's clock.)

        The score ``sum_{i,k<A} 2^(i+k) (Dh - 2 pc_ik)`` is ``Dh (2^A - 1)^2 - 2 P`` with
        ``P = sum 2^(i+k) pc_ik``, so ``score >= ta`` is ``P <= (Dh (2^A - 1)^2 - ta) >> 1``
        (floor): the bound is a register per head, computed from ``ta`` and ``bits_m1`` (both
        held while the unit scans, and set a cycle before a query's scan), and the pipeline
        sums only the popcounts (timing: the dots, their masks, the sum and the compare made
        one path).

        Which planes the command uses (``bits_m1`` decoded) and its top level reach each head
        from a register of the head's own (``unmerged_registers``, set a cycle after
        ``bits_m1``, which is therefore set by a query's first cycle): from one decode they
        fanned out to every context sum across the chip (the ULX3S-85F's critical path)."""
        h_n, dh, nb = self._h, self._dh, self._bits
        d = h_n * dh
        x_valid, r_valid, p_valid, s_valid, a_valid = (Signal(), Signal(), Signal(), Signal(),
                                                       Signal())
        x_k, x_v, r_v, p_v, s_v, a_v = (Signal(d * nb, name=n)
                                        for n in ("x_k", "x_v", "r_v", "p_v", "s_v", "a_v"))
        a_bits = Signal(h_n)
        m.d.sync += [rd_valid.eq(0), x_valid.eq(0), r_valid.eq(0), p_valid.eq(0),
                     s_valid.eq(0), a_valid.eq(0)]
        pc_shape = range(dh + 1)
        pcs = {(h, i, k): Signal(pc_shape, name=f"pc{h}_{i}_{k}")
               for h in range(h_n) for i in range(nb) for k in range(nb)}
        lv = Signal(5)
        m.d.comb += lv.eq((1 << (self.bits_m1 + 1)) - 1)
        keep = "ecp5" if fam == "ecp5" else None
        # Per head: the planes used, then the top level's bits.
        copies = [unmerged_registers(m, f"planes{h}",
                                     [i <= self.bits_m1 for i in range(nb)] + list(lv), 1, keep)
                  for h in range(h_n)]
        used = [cp[:nb] for cp in copies]
        lv_h = [Cat(*cp[nb:]) for cp in copies]
        with m.If(rd_valid):
            m.d.sync += [x_valid.eq(1), x_k.eq(k_r.data), x_v.eq(v_r.data)]
        rows = {}
        for (h, i, k) in pcs:
            sl = slice(h * dh, (h + 1) * dh)
            x = q.word_select(i, d)[sl] ^ x_k.word_select(k, d)[sl]
            two = popcount_tree(m, [x[b] for b in range(dh)], name=f"s{h}_{i}_{k}", rows=True)
            rows[h, i, k] = [Signal.like(r, name=f"rows{h}_{i}_{k}_{j}")
                             for j, r in enumerate(two)]
            with m.If(x_valid):
                m.d.sync += [r.eq(v) for r, v in zip(rows[h, i, k], two, strict=True)]
        with m.If(x_valid):
            m.d.sync += [r_valid.eq(1), r_v.eq(x_v)]
        with m.If(r_valid):
            m.d.sync += [p_valid.eq(1), p_v.eq(r_v)]
            m.d.sync += [pc.eq(Mux(used[h][i] & used[h][k], rows[h, i, k][0] + rows[h, i, k][1],
                                   0))
                         for (h, i, k), pc in pcs.items()]
        lv_max = (1 << nb) - 1
        top = lv_max * lv_max * dh
        # The bound per head: (Dh (2^A - 1)^2 - ta) >> 1.
        full = Signal(range(top + 1))
        m.d.comb += full.eq(Array([dh * ((2 << b) - 1) ** 2 for b in range(nb)])[self.bits_m1])
        bounds = []
        for h in range(h_n):
            b = Signal(signed(max(top.bit_length(), len(self.ta[h])) + 2), name=f"bound{h}")
            m.d.sync += b.eq((full - self.ta[h]) >> 1)
            bounds.append(b)
        # Cycle 3: each head's terms in groups of up to three, summed.
        sum_shape = range(top + 1)
        parts = {}
        for h in range(h_n):
            terms = [pcs[h, i, k] << (i + k) for i in range(nb) for k in range(nb)]
            groups = [terms[g:g + 3] for g in range(0, len(terms), 3)]
            parts[h] = [Signal(sum_shape, name=f"part{h}_{g}") for g in range(len(groups))]
            with m.If(p_valid):
                m.d.sync += [part.eq(_tree_sum(grp))
                             for part, grp in zip(parts[h], groups, strict=True)]
        with m.If(p_valid):
            m.d.sync += [s_valid.eq(1), s_v.eq(p_v)]
        scores = []
        for h in range(h_n):
            total = Signal(sum_shape, name=f"popsum{h}")
            m.d.comb += total.eq(_tree_sum(parts[h]))
            scores.append(total <= bounds[h])
        with m.If(s_valid):
            m.d.sync += [a_valid.eq(1), a_bits.eq(Cat(*scores)), a_v.eq(s_v)]
        with m.If(a_valid):
            for ch in range(d):
                h = ch // dh
                level = Cat(*[a_v[i * d + ch] & used[h][i] for i in range(nb)])
                with m.If(a_bits[h]):
                    m.d.sync += acc[ch].eq(acc[ch] + (level << 1) - lv_h[h])
        return ~x_valid & ~r_valid & ~p_valid & ~s_valid & ~a_valid


def _tree_sum(values):
    """``values`` added as a balanced tree (timing: Python's ``sum`` is a chain of adders)."""
    values = list(values)
    while len(values) > 1:
        values = [values[j] + values[j + 1] if j + 1 < len(values) else values[j]
                  for j in range(0, len(values), 2)]
    return values[0]
