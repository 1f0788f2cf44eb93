"""The GEMV unit: one token's binary linear layer at the array's full width, for decode.

With one token a GEMM uses one row of the R x C array and is limited by the weight stream (one
word a cycle), so the array idles. The GEMV unit instead reads a *line* of ``P`` weight words a
cycle from the banked weight store (``BankedStore``, ``P = weight_banks``, typically R x C), XORs
each word with the matching word of the token's row and popcounts all ``P * L`` bits at once:
the K dimension is split across the line and the partial counts are reduced by an adder tree.

Layout: the matrix is row-major, ``kw = ceil(K / L)`` words a row, starting at a line boundary
(``w_line``). A line holds ``G = P / S`` rows of ``S = min(kw, P)`` words each (``kw`` a power of
two below ``P``) or a ``P``-word segment of one row (``kw`` a multiple of ``P``; ``E = kw / P``
lines a row). ``G <= cols`` (``DeviceConfig.gemv_problem`` checks both). Padding bits beyond K
must be zero in the row and in the weights (the layer engine and the host make them so).

Protocol: ``start`` latches ``params``; the unit reads the row's ``kw`` words from
``act_base`` (``act_*``, read latency ``act_latency``) into its line register, then streams
lines and writes ``result`` beats in the GEMM core's format for T = 1: a beat per channel tile
of ``cols`` outputs, ``ints`` (dot products) or, with ``threshold``, ``bits`` (bit ``c`` is ``dot >=
thr``, thresholds read a tile at a time from the banked threshold store at ``th_line``).
Channels beyond N are 0; ``last`` marks the final beat; ``done`` pulses when it is taken.
Backpressure never stalls the pipeline: beats go into a ``OUT_DEPTH``-beat FIFO in front of
``result``, and a line is issued only while the FIFO has room for every beat in flight (credit
flow control; timing: ``result.ready`` reaches only the FIFO and the issue stage, not the
pipeline's registers). Cycles: ``kw + act_latency`` to load the row, then one line a cycle,
``ceil(N / G) * E`` lines, plus 6 + ``w_latency``.

Planes (``max_bits`` A_max > 1): ``params.bits_m1`` = A - 1 takes the token's row as A-bit
levels, stored as its A bit-planes of ``kw`` words each, top plane first (``A * kw`` words from
``act_base``, as the GEMM core takes them). Each weight line is issued once: the unit XORs it
with every plane's segment of the row at once (``A_max`` popcount trees) and takes each
plane's count, weighted ``2^(A - j)`` for plane ``j`` from the top, off a running dot product
that starts at ``(2^A - 1) K``, so the result is ``prod = (2^A - 1) K - 2 sum_i 2^i
popcount(p_i XOR w)`` (the numerics' ``prod`` of the levels against the binary row).
``A * kw`` words must fit ``max_chunks``. Cycles: ``A * kw + 2`` to load the row, then the
lines as at one bit. With ``max_bits = 1`` (the default) none of this logic exists.

The row's words pass a register on their way into the line register, so that the activation
store's read data reaches one register, not every entry (its clock-to-out and fan-out limited
the ULX3S-85F's clock): the unit's own (with planes, ``act_latency`` 1) or the caller's, in
front of ``act_rdata`` (``act_latency`` 2; the unit then registers no data word).
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from ..lib.family import family
from ..lib.popcount import popcount_tree
from ..lib.unmerged_register import unmerged_registers
from .gemm_layouts import result_layout

__all__ = ["Gemv", "gemv_layout", "OUT_DEPTH"]

#: Beats of the output FIFO.
OUT_DEPTH = 16
#: Beats that may still reach the FIFO after a line issues: stages s1, sx, s2, s3, the tile
#: register and the output register (one beat a line at most), and one more line issued while
#: the registered credit catches up. A line issues only while the FIFO has room for them all.
#: (One more with ``w_latency`` 2: stage sw.)
_IN_FLIGHT = 7


def gemv_layout(dev: DeviceConfig, max_bits: int = 1) -> data.StructLayout:
    """The unit's command; with ``max_bits`` > 1 it has ``bits_m1`` (activation bits - 1)."""
    c = dev.core
    fields = {
        "threshold": 1, "n": range(c.max_n + 1), "k": range(c.max_k + 1),
        "act_base": range(dev.act_words), "w_line": range(-(-dev.weight_words //
                                                             dev.weight_banks)),
        "th_line": range(-(-dev.thresh_words // dev.thresh_banks)),
    }
    if max_bits > 1:
        fields["bits_m1"] = range(max_bits)
    return data.StructLayout(fields)


class Gemv(wiring.Component):
    """Members
    -------
    start : In(1);  params : In(gemv_layout(dev, max_bits));  done : Out(1);  busy : Out(1)
    act_raddr : Out;  act_ren : Out(1);  act_rdata : In(lanes), ``act_latency`` cycles after
        ``act_ren`` (1: the store's port; 2: a register behind it)
    w_laddr : Out;  w_lren : Out(1);  w_ldata : In(lanes * weight_banks), ``w_latency``
        cycles after ``w_lren`` (1: the block RAMs' outputs; 2: their output registers)
    w_lmode : Out(1), a register, high while a product reads lines (from the row's load to the
        last result): a store in line mode (``BankedStore(line_mode=True)``) reads ``w_laddr``
        every cycle under it, so its banks' address pins do not see the issue
    th_laddr : Out;  th_lren : Out(1);  th_ldata : In(threshold_width * cols)
    result : Out(stream.Signature(result_layout(core)))
    """

    def __init__(self, dev: DeviceConfig, *, max_bits: int = 1, act_latency: int = 1,
                 w_latency: int = 1):
        check_device(dev)
        if dev.weight_banks < 2:
            raise ValueError(f"Gemv needs a banked weight store (weight_banks >= 2), not "
                             f"{dev.weight_banks}")
        if isinstance(max_bits, bool) or not isinstance(max_bits, int) or \
                not 1 <= max_bits <= dev.core.max_bits:
            raise ValueError(f"max_bits must be an integer from 1 to the core's max_bits "
                             f"({dev.core.max_bits}), not {max_bits!r}")
        if act_latency not in (1, 2):
            raise ValueError(f"act_latency must be 1 or 2 (cycles from act_ren to act_rdata), "
                             f"not {act_latency!r}")
        if w_latency not in (1, 2):
            raise ValueError(f"w_latency must be 1 or 2 (cycles from w_lren to w_ldata), "
                             f"not {w_latency!r}")
        self._dev, self._max_bits, self._act_latency = dev, max_bits, act_latency
        self._w_latency = w_latency
        c = dev.core
        super().__init__({
            "start": In(1), "params": In(gemv_layout(dev, max_bits)), "done": Out(1),
            "busy": Out(1),
            "act_raddr": Out(range(dev.act_words)), "act_ren": Out(1), "act_rdata": In(c.lanes),
            "w_laddr": Out(range(-(-dev.weight_words // dev.weight_banks))), "w_lren": Out(1),
            "w_ldata": In(c.lanes * dev.weight_banks), "w_lmode": Out(1),
            "th_laddr": Out(range(-(-dev.thresh_words // dev.thresh_banks))), "th_lren": Out(1),
            "th_ldata": In(c.threshold_width * c.cols),
            "result": Out(stream.Signature(result_layout(c))),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        L, C, P = c.lanes, c.cols, dev.weight_banks
        A_max = self._max_bits
        p_bits = P.bit_length() - 1
        e_max = max(1, c.max_chunks // P)
        levels = p_bits + 1
        # Line registers: plane ``i``'s segment ``e`` in entry ``i * E + e``.
        n_ent = max(e_max, A_max)

        p = Signal(gemv_layout(dev, A_max))
        kw = Signal(range(c.max_chunks + 1))
        s_log = Signal(range(levels))                  # log2(S)
        g_log = Signal(range(levels))                  # log2(G)
        g_mask = Signal(range(P + 1))                  # G - 1
        e_m1 = Signal(range(e_max + 1))                # E - 1
        lines_left = Signal(range(c.max_n * c.max_chunks + 1))
        n_groups = Signal(range(c.max_n + 1))

        # The row, as lines: entry e slot s holds word e * P + s (kw >= P), or word s mod kw
        # (of plane e // E with planes).
        xl = [Signal(P * L, name=f"xline{e}") for e in range(n_ent)]

        m.d.sync += self.done.eq(0)
        # The output: a registered beat (``res``) into the FIFO that drives ``result``.
        res = stream.Signature(result_layout(c)).create(path=("res",))
        m.submodules.out_fifo = ofifo = fifo.SyncFIFOBuffered(
            width=res.payload.shape().size, depth=OUT_DEPTH)
        m.d.comb += [ofifo.w_data.eq(res.payload.as_value()), ofifo.w_en.eq(res.valid),
                     res.ready.eq(ofifo.w_rdy),
                     self.result.valid.eq(ofifo.r_rdy), self.result.payload.eq(ofifo.r_data),
                     ofifo.r_en.eq(self.result.ready)]
        credit = Signal()
        m.d.sync += credit.eq(ofifo.level < OUT_DEPTH - _IN_FLIGHT - (self._w_latency - 1))
        out_free = ~res.valid | res.ready
        build_full = Signal()

        # ---------------------------------------------------------------- issue (s0)
        line = Signal.like(self.w_laddr)
        phase = Signal(range(e_max))
        row0 = Signal(range(c.max_n + P + 1))
        issuing = Signal()
        s1_valid, s1_last, s1_first = Signal(), Signal(), Signal()
        s1_row0 = Signal.like(row0)
        m.d.comb += [self.w_laddr.eq(line), self.w_lren.eq(issuing)]
        # With ``w_latency`` 2 the line's control waits a cycle in stage sw, as its words do in
        # the weight store's output registers.
        if self._w_latency == 2:
            sw_valid, sw_last, sw_first = Signal(), Signal(), Signal()
            sw_row0 = Signal.like(row0)
            m.d.sync += [sw_valid.eq(issuing), sw_last.eq(phase == e_m1),
                         sw_first.eq(phase == 0), sw_row0.eq(row0),
                         s1_valid.eq(sw_valid), s1_last.eq(sw_last),
                         s1_first.eq(sw_first), s1_row0.eq(sw_row0)]
        else:
            m.d.sync += [s1_valid.eq(issuing), s1_last.eq(phase == e_m1),
                         s1_first.eq(phase == 0), s1_row0.eq(row0)]
        with m.If(issuing):
            m.d.sync += [line.eq(line + 1), lines_left.eq(lines_left - 1)]
            with m.If(phase == e_m1):
                m.d.sync += [phase.eq(0), row0.eq(row0 + g_mask + 1)]
            with m.Else():
                m.d.sync += phase.eq(phase + 1)

        # ---------------------------------------------------------------- popcounts (s1)
        # Plane ``j``'s segment of this line: entry ``j * E + phase`` (``ebase``: j * E),
        # registered with the issue, once for each bank's word (timing: the sum, and one index
        # fanned out to all ``P * L`` selects of a plane, limited the ULX3S-85F's clock); with
        # ``w_latency`` 2 the sum is registered once in stage sw and copied into s1.
        ebase = [Signal(range(n_ent), name=f"ebase{j}") for j in range(A_max)]
        xsel = [Signal(P * L, name=f"xsel{j}") for j in range(A_max)]
        keep = "ecp5" if family(platform) == "ecp5" else None
        for j in range(A_max):
            if n_ent == 1:
                m.d.comb += xsel[j].eq(xl[0])
                continue
            entry = Signal(range(2 * n_ent), name=f"entry{j}")    # as wide as the sum
            if self._w_latency == 2:
                m.d.sync += entry.eq(ebase[j] + phase)
            else:
                m.d.comb += entry.eq(ebase[j] + phase)
            for i in range(P):
                bits = unmerged_registers(m, f"s1_sel{j}_{i}", list(entry), 1, keep)
                m.d.comb += xsel[j][i * L:(i + 1) * L].eq(
                    Array(e[i * L:(i + 1) * L] for e in xl)[Cat(*bits)])
        pc_w = L.bit_length()
        # sx: the line XOR each plane's row, registered straight off the block RAM outputs
        # (timing).
        sx_valid, sx_last, sx_first = Signal(), Signal(), Signal()
        sx_row0 = Signal.like(row0)
        sx_xw = [Signal(P * L, name=f"sx_xw{j}") for j in range(A_max)]
        m.d.sync += [sx_valid.eq(s1_valid), sx_last.eq(s1_last), sx_first.eq(s1_first),
                     sx_row0.eq(s1_row0)]
        m.d.sync += [sx_xw[j].eq(xsel[j] ^ self.w_ldata) for j in range(A_max)]
        s2_valid, s2_last, s2_first = Signal(), Signal(), Signal()
        s2_row0 = Signal.like(row0)
        s2_pc = [[Signal(pc_w, name=f"pc{j}_{i}") for i in range(P)] for j in range(A_max)]
        m.d.sync += [s2_valid.eq(sx_valid), s2_last.eq(sx_last), s2_first.eq(sx_first),
                     s2_row0.eq(sx_row0)]
        for j in range(A_max):
            for i in range(P):
                word = sx_xw[j][i * L:(i + 1) * L]
                m.d.sync += s2_pc[j][i].eq(popcount_tree(m, [word[b] for b in range(L)],
                                                         name=f"gv{j}_{i}"))

        # ---------------------------------------------------------------- reduce (s2)
        acc_w = c.acc_width
        # s3: each plane's group sums registered (the adder tree is one stage, the planes'
        # weighted sum and the accumulation the next).
        s3_valid, s3_last, s3_first = Signal(), Signal(), Signal()
        s3_row0 = Signal.like(row0)
        m.d.sync += [s3_valid.eq(s2_valid), s3_last.eq(s2_last), s3_first.eq(s2_first),
                     s3_row0.eq(s2_row0)]
        s3_parts = []
        for j in range(A_max):
            lvl = [s2_pc[j]]
            for k in range(p_bits):
                prev = lvl[-1]
                lvl.append([Signal(acc_w, name=f"l{j}_{k + 1}_{i}")
                            for i in range(len(prev) // 2)])
                for i, v in enumerate(lvl[-1]):
                    m.d.comb += v.eq(prev[2 * i] + prev[2 * i + 1])
            part = [Signal(acc_w, name=f"part{j}_{g}") for g in range(C)]
            for g in range(C):
                with m.Switch(s_log):
                    for k in range(levels):
                        if g < len(lvl[k]):
                            with m.Case(k):
                                m.d.comb += part[g].eq(lvl[k][g])
            s3_part = [Signal(acc_w, name=f"s3_part{j}_{g}") for g in range(C)]
            m.d.sync += [a.eq(b) for a, b in zip(s3_part, part, strict=True)]
            s3_parts.append(s3_part)
        rw = c.result_width + 2
        k_s = Signal(signed(rw))                       # (2^A - 1) K
        if A_max > 1:
            lk = Signal(range(c.result_bound + 1))
            m.d.comb += k_s.eq(lk)
        else:
            m.d.comb += k_s.eq(p.k)
        # The running dot product, ``(2^A - 1) K - 2 sum_lines sum_{j<A} 2^(A-1-j) popcount(p_j
        # XOR w)`` (each line's planes weighted as Horner's rule would, top plane first), kept
        # as a dot product (``dacc``) so that a line takes ``2^(A-j)`` times each plane's count
        # off it in two levels of adders, not a chain of four (timing).
        dacc = [Signal(signed(rw), name=f"dacc{g}") for g in range(C)]
        dotv = [Signal(signed(rw), name=f"dot{g}") for g in range(C)]
        for g in range(C):
            terms = []
            for j in range(A_max):
                t = Signal(acc_w + A_max + 1, name=f"w{j}_{g}")
                m.d.comb += t.eq(Array(s3_parts[j][g] << (a + 1 - j) if j <= a else 0
                                       for a in range(A_max))[p.bits_m1]
                                 if A_max > 1 else s3_parts[j][g] << 1)
                terms.append(t)
            rest = terms[1:]
            while len(rest) > 1:
                rest = [rest[i] + rest[i + 1] if i + 1 < len(rest) else rest[i]
                        for i in range(0, len(rest), 2)]
            head = Mux(s3_first, k_s, dacc[g]) - terms[0]
            m.d.comb += dotv[g].eq(head - rest[0] if rest else head)

        build = [Signal(signed(rw), name=f"build{b}") for b in range(C)]
        tile = Signal(range(-(-c.max_n // C) + 1))
        build_last = Signal()
        n_tiles = Signal(range(-(-c.max_n // C) + 1))
        pos = Signal(range(C))
        m.d.comb += pos.eq(s3_row0[:max(1, (C - 1).bit_length())] if C > 1 else 0)
        # ---------------------------------------------------------------- out
        thr = data.View(data.ArrayLayout(signed(c.threshold_width), C), self.th_ldata)
        with m.If(res.ready):
            m.d.sync += res.valid.eq(0)
        with m.If(build_full & out_free):
            m.d.sync += [res.valid.eq(1), res.payload.last.eq(build_last),
                         res.payload.bits.eq(0), res.payload.ints.eq(0)]
            m.d.sync += build_full.eq(0)      # a tile completing now sets it again below
            base = (tile - 1) * C
            for b in range(C):
                live = (base + b) < p.n
                with m.If(p.threshold):
                    m.d.sync += res.payload.bits[b].eq(live & (build[b] >= thr[b]))
                with m.Else():
                    m.d.sync += res.payload.ints[b].eq(Mux(live, build[b], 0))

        with m.If(s3_valid):
            m.d.sync += [a.eq(t) for a, t in zip(dacc, dotv, strict=True)]
            with m.If(s3_last):
                for b in range(C):
                    g = b & g_mask
                    hit = ((b ^ pos) & ~g_mask & (C - 1)) == 0
                    with m.If(hit):
                        m.d.sync += build[b].eq(Mux(s3_row0 + g < p.n, Array(dotv)[g], 0))
                with m.If(pos == 0):
                    m.d.comb += self.th_lren.eq(1)
                # The tile is complete when its last slot is written or the rows run out.
                with m.If(((pos | g_mask) >= C - 1) | (s3_row0 + g_mask + 1 >= p.n)):
                    m.d.sync += [build_full.eq(1), build_last.eq(tile == n_tiles - 1),
                                 tile.eq(tile + 1)]
        m.d.comb += self.th_laddr.eq(p.th_line + tile)

        # ---------------------------------------------------------------- control
        xj = Signal(range(c.max_chunks + 1))           # words read of the row
        xv = Signal()
        s_mask = Signal(range(P + 1))
        if A_max > 1:
            xr = Signal(range(c.max_chunks + 1))       # the word's place in its plane
            xe0 = Signal(range(n_ent))                 # the plane's first entry (i * E)
        else:
            xr, xe0 = xj, 0
        xr_d, xe0_d = Signal(range(c.max_chunks + 1)), Signal(range(n_ent))
        m.d.sync += xv.eq(0)
        if A_max > 1 or self._act_latency == 2:
            # The row's words reach the line register through one register (the store's read
            # data would otherwise route to every entry in one cycle): this unit's own, or,
            # with ``act_latency`` 2, the one in front of ``act_rdata``.
            xw, xw_v = Signal(L), Signal()
            xw_r, xw_e0 = Signal.like(xr_d), Signal.like(xe0_d)
            m.d.sync += [xw_v.eq(xv), xw_r.eq(xr_d), xw_e0.eq(xe0_d)]
            if self._act_latency == 1:
                m.d.sync += xw.eq(self.act_rdata)
            else:
                m.d.comb += xw.eq(self.act_rdata)
            loading = xv | xw_v
        else:
            xw, xw_v, xw_r, xw_e0 = self.act_rdata, xv, xr_d, xe0_d
            loading = xv
        with m.If(xw_v):
            for e in range(n_ent):
                for s in range(P):
                    with m.If((xw_e0 + (xw_r >> p_bits) == e) &
                              ((s & s_mask) == (xw_r & s_mask))):
                        m.d.sync += xl[e][s * L:(s + 1) * L].eq(xw)
        m.d.comb += self.act_raddr.eq(p.act_base + xj)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += p.eq(self.params)
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                k_w = (p.k + L - 1) >> c.lane_bits
                m.d.sync += [kw.eq(k_w), s_log.eq(p_bits), g_log.eq(0), g_mask.eq(0), xj.eq(0),
                             e_m1.eq((k_w >> p_bits) - 1), s_mask.eq(P - 1)]
                if A_max > 1:
                    m.d.sync += [lk.eq((p.k << (p.bits_m1 + 1)) - p.k), xr.eq(0), xe0.eq(0)]
                for i in range(p_bits):
                    with m.If(k_w == (1 << i)):
                        m.d.sync += [s_log.eq(i), g_log.eq(p_bits - i), g_mask.eq((P >> i) - 1),
                                     e_m1.eq(0),
                                     s_mask.eq((1 << i) - 1)]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [n_groups.eq((p.n + g_mask) >> g_log),
                             n_tiles.eq((p.n + C - 1) >> max(0, (C - 1).bit_length()))]
                m.next = "SETUP3"
            with m.State("SETUP3"):
                m.d.comb += self.busy.eq(1)
                lines = n_groups * (e_m1 + 1)
                m.d.sync += [lines_left.eq(lines), line.eq(p.w_line), phase.eq(0), row0.eq(0),
                             tile.eq(0)]
                m.d.sync += [ebase[j].eq(j * (e_m1 + 1)) for j in range(A_max)]
                m.d.sync += self.w_lmode.eq(1)
                m.next = "XLOAD"
            with m.State("XLOAD"):
                m.d.comb += [self.busy.eq(1), self.act_ren.eq(1)]
                m.d.sync += [xj.eq(xj + 1), xv.eq(1), xr_d.eq(xr), xe0_d.eq(xe0)]
                row_end = xr == kw - 1
                if A_max > 1:
                    m.d.sync += xr.eq(xr + 1)
                    with m.If(row_end):
                        m.d.sync += [xr.eq(0), xe0.eq(xe0 + e_m1 + 1)]
                    done_loading = row_end & (xe0 == p.bits_m1 * (e_m1 + 1))
                else:
                    done_loading = row_end
                with m.If(done_loading):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), issuing.eq((lines_left != 0) & ~loading & credit)]
                with m.If(self.result.valid & self.result.ready & self.result.payload.last):
                    m.d.sync += [self.done.eq(1), self.w_lmode.eq(0)]
                    m.next = "IDLE"
        return m
