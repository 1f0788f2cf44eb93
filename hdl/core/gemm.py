"""The GEMM core: activation buffer, ping-pong weight buffer, array, post-op and the controller.

It computes the spec's ``BinaryLinear`` (``Op.XOR``) or the mask-times-binary product
(``Op.AND``) for any ``T <= max_t``, ``N <= max_n``, ``K <= max_k``:
``Y[t, n] = dot(X[t], W[n])`` (or ``mdot``), and with thresholds the bits ``Y >= thr[n]``.

Protocol (all streams follow ``amaranth.lib.stream``'s rules):

1. ``cmd``: one beat ``{op, threshold, t, n, k}``. Accepted only when the core is idle. A command
   with a size of 0 or beyond the configured maximum is consumed and rejected: ``cmd_error``
   pulses for one cycle and nothing else happens.
2. ``act``: T rows of ``ceil(K / L)`` chunks (``onebit.host.core_config.to_chunks``), row after
   row. Padding bits are ignored (masked), so garbage there never changes a result.
3. ``weight``: for each tile of C output channels, its rows one after another (the last tile
   has only ``N mod C`` rows), each ``ceil(K / L)`` chunks; with ``threshold`` set, each tile's
   rows are followed on ``thresh`` by its thresholds, one per row. Weight tiles load into one
   half of the weight buffer while the array computes on the other (ping-pong).
4. ``result``, for each channel tile: without thresholds one beat per token, ``ints`` (C signed
   results); with thresholds one beat per token tile, ``bits`` (R x C bits, bit ``r * C + c`` is
   token ``tile_start + r``, channel ``channel_tile * C + c``). Tokens beyond T and channels
   beyond N are 0, and so is the field the mode does not use. ``last`` marks the final beat
   of the command.

Activation bits (``config.max_bits > 1``): the command's ``bits_m1`` is ``A - 1``; each
activation row is then ``A`` bit-planes of ``ceil(K / L)`` chunks, top plane first, and the
core issues every plane of a row against the same weight row, the accumulators doubling at each
plane's end, so an XOR result is ``prod = L K - 2 sum_i 2^i popcount(p_i XOR w)`` with
``L = 2^A - 1`` (the spec's product of A-bit activations; thresholds compare with it). A row
takes ``A`` times the cycles of one plane. A command with ``A > 1`` and ``Op.AND``, or whose
``A * ceil(K / L)`` exceeds ``max_chunks``, is rejected.

Timing: activations load at one chunk per cycle; a token tile starts as soon as its rows are in,
so the first channel tile overlaps the activation load (it is load-bound: ``T * ceil(K/L)``
cycles). Every further channel tile takes ``ceil(T / R) * ceil(K / L)`` cycles; the drain of a
token tile (R beats) overlaps the next token tile when ``ceil(K / L) > R``, otherwise a token
tile takes ``R + 1`` cycles. Loading the next weight tile (``rows * ceil(K/L)`` cycles) overlaps
compute when ``ceil(T / R) >= C``. Pipeline latency: ``2 + ComputeArray.latency()`` cycles from
issue to the accumulators (the elements' registers before their adders, ``CoreConfig.pe_stages``,
and on ECP5 each element's copy of its operands);
a tile's last chunk captures its sums, two cycles after they become results; then one result
beat per row (or per tile of bits).
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CoreConfig, Op
from ..lib.event_counter import COUNTER_KINDS, EventCounter, counter_kind
from ..lib.family import family
from .act_buffer import ActivationBuffer
from .array import ComputeArray
from .gemm_layouts import (
    COUNTERS,
    by_bits,
    command_layout,
    counters_layout,
    result_layout,
    tile_layout,
    times_bits,
)
from .result_drain import ResultDrain
from .weight_buffer import WeightBuffer

__all__ = ["GemmCore"]


class GemmCore(wiring.Component):
    """Tiled binary GEMM on an R x C array of L-lane processing elements.

    Parameters
    ----------
    config : CoreConfig
    operand_copies : bool or None
        ``ComputeArray``'s ``copies``: None lets the platform's family choose (ECP5: each
        element registers its own operands, one cycle more latency); True or False forces it.
    result_stage : bool or None
        Compute the results a cycle before the shadow takes them (every cycle, without an
        enable: timing), one cycle more from capture to drain. None lets the platform's family
        choose (not on iCE40, whose UP5K has no logic cells to spare); True or False forces it.
    counter_kind : str or None
        The counters' ``EventCounter`` kind: None lets the platform choose (one DSP block each
        on an iCE40 UltraPlus, else flip-flops and adders); ``"fabric"`` or ``"ice40_dsp"``
        forces it.

    Members
    -------
    cmd : In(stream.Signature(command_layout(config)))
    act : In(stream.Signature(lanes))
    weight : In(stream.Signature(lanes))
    thresh : In(stream.Signature(signed(config.threshold_width)))
    result : Out(stream.Signature(result_layout(config)))
    cmd_error : Out(1)
        Pulses for one cycle when a command is rejected.
    busy : Out(1)
        High from command acceptance until its last result is taken.
    counters : Out(StructLayout of ``COUNTERS``, 32 bits each)
        Cycles busy, with the array computing, with the pipeline stalled by the drain, waiting
        for a weight tile, and with a result held back by the sink.
    """

    def __init__(self, config: CoreConfig, *, operand_copies: bool | None = None,
                 result_stage: bool | None = None, counter_kind: str | None = None):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if not (result_stage is None or isinstance(result_stage, bool)):
            raise TypeError(f"result_stage must be None, True or False, not {result_stage!r}")
        if not (counter_kind is None or counter_kind in COUNTER_KINDS):
            raise ValueError(f"counter_kind must be None or one of {', '.join(COUNTER_KINDS)}, "
                             f"not {counter_kind!r}")
        self._counter_kind = counter_kind
        self._cfg = c = config
        self._copies = operand_copies
        self._result_stage = result_stage
        super().__init__({
            "cmd": In(stream.Signature(command_layout(c))),
            "act": In(stream.Signature(c.lanes)),
            "weight": In(stream.Signature(c.lanes)),
            "thresh": In(stream.Signature(signed(c.threshold_width))),
            "result": Out(stream.Signature(result_layout(c))),
            "cmd_error": Out(1),
            "busy": Out(1),
            "counters": Out(counters_layout()),
        })

    @property
    def config(self) -> CoreConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L, KWM = cfg.rows, cfg.cols, cfg.lanes, cfg.max_chunks
        m.submodules.array = arr = ComputeArray(cfg, copies=self._copies)
        m.submodules.acts = acts = ActivationBuffer(cfg)
        m.submodules.weights = weights = WeightBuffer(cfg)
        stage = self._result_stage
        if stage is None:
            stage = family(platform) != "ice40"
        m.submodules.drain = drain = ResultDrain(cfg, result_stage=stage)
        wiring.connect(m, wiring.flipped(self.act), acts.act)
        wiring.connect(m, wiring.flipped(self.weight), weights.weight)
        wiring.connect(m, wiring.flipped(self.thresh), weights.thresh)
        wiring.connect(m, drain.result, wiring.flipped(self.result))

        planes = cfg.max_bits > 1
        # Command registers.
        op = Signal(Op)
        thr_en = Signal()
        t = Signal(range(cfg.max_t + 1))
        n = Signal(range(cfg.max_n + 1))
        kw = Signal(range(KWM + 1))
        last_mask = Signal(L)
        start = Signal()
        # ``L K``, the XOR results' base (K without planes).
        kx = Signal(range(cfg.result_bound + 1))

        # Ping-pong state. ``full[h]``: half h holds a tile the issue stage has not finished
        # reading (set by the loader, cleared by the tile's last issue). ``held[h]``: half h
        # (weights and thresholds) is still needed (set by the loader, cleared when the
        # tile's last results are captured). The loader refills only a half that is not held.
        full = Signal(2)
        held = Signal(2)
        tile_loaded = weights.tile_loaded
        full_clr = Signal(2)
        held_clr = drain.held_clr
        m.d.sync += [full.eq((full | tile_loaded) & ~full_clr),
                     held.eq((held | tile_loaded) & ~held_clr)]

        # Pipeline control: ``adv`` moves issue -> s1 -> s2 -> array (s3: the stage whose sums
        # the array gives, ``arr.latency()`` after s2) together.
        s2_valid, s2_last = Signal(), Signal()
        s3_valid, s3_last = Signal(), Signal()
        # A tile's last chunk captures the array's sums (``ResultDrain``); it waits (and so
        # does the whole pipeline) while the drain's ``raw`` still holds the previous tile:
        # ``adv = ~(s3_valid & s3_last & raw_full)``. ``adv`` enables every register of the
        # array, so it is a register itself, computed a cycle early from the values those
        # three take next (exactly; below, after the capture) (timing: a decode in front of
        # that fan-out set the whole design's Fmax in some placements).
        adv = Signal(init=1)

        # ---------------------------------------------------------------- main controller
        i_j = Signal(range(KWM))
        i_abase = Signal(range(cfg.act_depth + KWM + 1))
        i_half = Signal()
        s0_valid = Signal()
        s0 = Signal(tile_layout(cfg))
        s0_last = Signal()
        final_taken = Signal()
        idle = Signal()
        computing = Signal()

        # The issue position, kept so that issue decisions start from registers and compare
        # with constants only: tokens and channels left in the tile walk, the activation rows
        # the current token tile needs (``min(first token + R, t)``), whether ``i_j`` is the
        # row's last chunk.
        i_tleft = Signal(range(cfg.max_t + 1))
        i_nleft = Signal(range(cfg.max_n + 1))
        i_need = Signal(range(cfg.max_t + 1))
        first_need = Signal(range(cfg.max_t + 1))   # min(T, R) (set in CHECK, like the next)
        i_jlast = Signal()
        t_le_r = Signal()                           # T <= R
        t_m1 = Signal(range(cfg.max_t + 1))         # T - 1: the activation loader's last row
        rows_in, rows_ge, need_moves = Signal(), Signal(), Signal()
        kw_one = Signal()                           # K <= L: one chunk a plane
        first_end = Signal()                        # rw_one & t_le_r: a tile of one issue
        # ceil(K/L) - 2: ``j + 1 == kw_m1`` as ``j == kw_m2`` (timing: no adder before the
        # compare; only used while a row has a chunk after ``j``, so kw >= 2 there).
        kw_m2 = Signal(range(KWM + 1))
        # A row's chunks (``rw = A * kw``; the issue walks rows of planes), whether that is one,
        # and ``rw - 2``; without planes the same registers as ``kw``'s. With planes, the
        # weight row's chunk ``i_wj`` (and whether it is its last) walks beside ``i_j``,
        # wrapping at every plane.
        rw, rw_one, rw_m2 = kw, kw_one, kw_m2
        i_wj, i_wjlast = i_j, i_jlast
        if planes:
            rw, rw_one, rw_m2 = Signal(range(KWM + 1)), Signal(), Signal(range(KWM + 1))
            i_wj, i_wjlast = Signal(range(KWM)), Signal()
        # The tile's shape, kept beside ``i_tleft`` and ``i_nleft`` as registers (timing: their
        # compares fed the control state machine): ``min(i_tleft, R)``, ``min(i_nleft, C)``,
        # ``i_tleft <= R``, ``i_nleft <= C``.
        i_rows = Signal(range(R + 1))
        i_cols = Signal(range(C + 1))
        i_ltt, i_lnt = Signal(), Signal()
        # ``i_half``, ``i_jlast`` and ``i_ltt`` are set through their next values (``*_next``),
        # from which two more registers follow (timing: the issue decision tests one register
        # each, not a decode of several): ``full_cur``, ``full[i_half]``, and ``tile_end``,
        # ``i_jlast & i_ltt`` (the tile's last issue: the ping-pong half moves).
        i_half_next, i_jlast_next, i_ltt_next = Signal(), Signal(), Signal()
        full_cur, tile_end = Signal(), Signal()
        m.d.comb += [i_half_next.eq(i_half), i_jlast_next.eq(i_jlast), i_ltt_next.eq(i_ltt)]
        m.d.sync += [i_half.eq(i_half_next), i_jlast.eq(i_jlast_next), i_ltt.eq(i_ltt_next)]
        m.d.sync += full_cur.eq(((full | tile_loaded) & ~full_clr).bit_select(i_half_next, 1))
        m.d.comb += [
            s0.rows.eq(i_rows),
            s0.cols.eq(i_cols),
            s0.half.eq(i_half),
            s0.last_tt.eq(i_ltt),
            s0.last_nt.eq(i_lnt),
            s0_last.eq(i_jlast),
        ]
        # The buffers: read at the issue position, loaded with the command's shape.
        m.d.comb += [acts.rd_addr.eq(i_abase + i_j), acts.rd_en.eq(adv),
                     weights.rd_addr.eq(i_wj), weights.rd_en.eq(adv)]
        for buf in (acts, weights):
            m.d.comb += [buf.start.eq(start), buf.kw_one.eq(kw_one), buf.kw_m2.eq(kw_m2),
                         buf.last_mask.eq(last_mask)]
        m.d.comb += [acts.kw.eq(kw), acts.t_m1.eq(t_m1), weights.thr_en.eq(thr_en),
                     weights.held.eq(held)]
        bits_m1 = Signal(2)
        if planes:
            m.d.comb += [acts.planes_m1.eq(bits_m1), acts.row_chunks.eq(rw)]

        m.d.sync += self.cmd_error.eq(0)
        pend = Signal(command_layout(cfg))
        pend_kw = Signal(range(KWM + 1))            # (planes: ceil(K / L) of ``pend``)
        k_m1 = Signal(range(cfg.max_k + 1))
        kw_m1 = k_m1[cfg.lane_bits:]                # ceil(K / L) - 1
        c_nmin = Signal(range(C + 1))
        c_nle, c_nge = Signal(), Signal()
        with m.FSM(name="control"):
            with m.State("IDLE"):
                # Take the command into registers, its check into ``cmd_error`` (the cycle
                # after), and act on it from the registers (CHECK, ACCEPT), so no enable
                # depends on the incoming payload (timing).
                m.d.comb += [self.cmd.ready.eq(1), idle.eq(1)]
                p = self.cmd.payload
                with m.If(self.cmd.valid):
                    bad = ((p.t == 0) | (p.t > cfg.max_t) | (p.n == 0) | (p.n > cfg.max_n) |
                           (p.k == 0) | (p.k > cfg.max_k))
                    if planes:
                        # A-bit rows must fit ``max_chunks``: K <= (max_chunks div A) * L
                        # (compares with constants), and the planes are XOR products only.
                        fits = [p.k > cfg.max_k_at(a) for a in range(1, 5)]
                        bad |= ((p.bits_m1 > cfg.max_bits - 1) |
                                ((p.bits_m1 != 0) & (p.op != Op.XOR)) |
                                by_bits(p.bits_m1, fits))
                    m.d.sync += [pend.eq(p), self.cmd_error.eq(bad)]
                    if planes:
                        # A plane's chunks, registered here (timing: with the multiply by A
                        # behind it, CHECK's path into ``rw`` set the 25F's Fmax).
                        m.d.sync += pend_kw.eq((p.k + L - 1) >> cfg.lane_bits)
                    m.next = "CHECK"
            with m.State("CHECK"):
                # ``K - 1`` (K >= 1 once the check passes): ``ceil(K / L) - 1`` is its chunk
                # part and the last chunk's top valid bit ``(K - 1) mod L`` its lane part.
                m.d.sync += k_m1.eq(pend.k - 1)
                # The command's other compares too, so ACCEPT only copies registers (timing);
                # those the command uses as it runs stay in these registers until the next.
                m.d.sync += [first_need.eq(Mux(pend.t >= R, R, pend.t)),
                             t_le_r.eq(pend.t <= R), t_m1.eq(pend.t - 1),
                             kw_one.eq(pend.k <= L),
                             c_nmin.eq(Mux(pend.n >= C, C, pend.n)), c_nle.eq(pend.n <= C),
                             c_nge.eq(pend.n >= C)]
                if planes:
                    # The row's chunks ``A * ceil(K / L)`` and ``L K``.
                    kwp = pend_kw
                    a = pend.bits_m1
                    m.d.sync += [
                        bits_m1.eq(a),
                        rw.eq(times_bits(kwp, a)),
                        rw_one.eq((a == 0) & (pend.k <= L)),
                        first_end.eq((a == 0) & (pend.k <= L) & (pend.t <= R)),
                        kx.eq(by_bits(a, [(pend.k << b) - pend.k for b in (1, 2, 3, 4)])),
                    ]
                else:
                    m.d.sync += [first_end.eq((pend.k <= L) & (pend.t <= R)), kx.eq(pend.k)]
                with m.If(self.cmd_error):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "ACCEPT"
            with m.State("ACCEPT"):
                p = pend
                # The last chunk of a row holds bits 0..top valid, top = (K - 1) mod L.
                top = Signal(range(L))
                m.d.comb += top.eq(k_m1[:cfg.lane_bits] if L > 1 else 0)
                m.d.sync += [
                    op.eq(p.op), thr_en.eq(p.threshold), t.eq(p.t), n.eq(p.n),
                    kw.eq(kw_m1 + 1),
                    # (A table of the L masks, not L compares: Yosys made each compare a
                    # carry chain, which set the 25F's Fmax at 1024 lanes.)
                    last_mask.eq(Array(Const((2 << i) - 1, L) for i in range(L))[top]),
                    i_j.eq(0), i_abase.eq(0),
                    i_tleft.eq(p.t), i_nleft.eq(p.n),
                    i_rows.eq(first_need),
                    i_cols.eq(c_nmin), i_lnt.eq(c_nle),
                    i_need.eq(first_need), kw_m2.eq(kw_m1 - 1),
                ]
                if planes:
                    m.d.sync += [rw_m2.eq(rw - 2), i_wj.eq(0), i_wjlast.eq(kw_one)]
                m.d.comb += [i_half_next.eq(0), i_ltt_next.eq(t_le_r), i_jlast_next.eq(rw_one)]
                # (The weight loader takes the command's rows with ``start``.)
                m.d.comb += [weights.n.eq(p.n), weights.n_ge_c.eq(c_nge),
                             weights.n_le_c.eq(c_nle)]
                m.d.comb += start.eq(1)
                m.next = "COMPUTE"

            with m.State("COMPUTE"):
                # A token tile may issue once its rows are in the activation buffer
                # (``tokens >= i_need``). That compare is registered (timing: it fed every
                # issue-stage enable): ``rows_ge`` is last cycle's answer, cleared the cycle
                # after ``i_need`` moves, so it is never true too early (``tokens`` only
                # grows); it can be one cycle late, and it holds once the whole load is in.
                # So the first channel tile overlaps the activation load.
                m.d.comb += [s0_valid.eq(full_cur & rows_in), computing.eq(1)]
                issue = s0_valid & adv
                with m.If(issue & s0_last):
                    m.d.comb += [need_moves.eq(1), i_jlast_next.eq(rw_one)]
                    m.d.sync += i_j.eq(0)
                if planes:
                    # The weight row's chunk, wrapping at every plane's end.
                    with m.If(issue & i_wjlast):
                        m.d.sync += [i_wj.eq(0), i_wjlast.eq(kw_one)]
                    with m.Elif(issue):
                        m.d.sync += [i_wj.eq(i_wj + 1), i_wjlast.eq(i_wj == kw_m2)]
                with m.If(issue & tile_end):
                    # (The tile's last issue: the next channel tile, in the other half.)
                    m.d.comb += [full_clr.bit_select(i_half, 1).eq(1), i_half_next.eq(~i_half),
                                 i_ltt_next.eq(t_le_r)]
                    m.d.sync += [i_abase.eq(0), i_tleft.eq(t),
                                 i_rows.eq(first_need),
                                 i_nleft.eq(i_nleft - C), i_need.eq(first_need),
                                 i_cols.eq(Mux(i_nleft >= 2 * C, C, i_nleft - C)),
                                 i_lnt.eq(i_nleft <= 2 * C)]
                    with m.If(s0.last_nt):
                        m.next = "FINISH"
                with m.If(issue & s0_last & ~s0.last_tt):
                    # (A token tile's last issue: the next token tile, same channels.)
                    m.d.comb += i_ltt_next.eq(i_tleft <= 2 * R)
                    m.d.sync += [i_abase.eq(i_abase + rw),
                                 i_tleft.eq(i_tleft - R),
                                 i_rows.eq(Mux(i_tleft >= 2 * R, R, i_tleft - R)),
                                 i_need.eq(Mux(i_tleft >= 2 * R, i_need + R, t))]
                with m.If(issue & ~s0_last):
                    m.d.comb += i_jlast_next.eq(i_j == rw_m2)
                    m.d.sync += i_j.eq(i_j + 1)

            with m.State("FINISH"):
                with m.If(final_taken):
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~idle)
        # ``tile_end`` (``i_jlast & i_ltt``) next, written out case by case with the issue
        # decision last (timing: not the AND of those two next values, each a chain of
        # multiplexers behind the decision). With an issue: a tile's last issue starts the next
        # channel tile, a token tile's last the next token tile, any other the next chunk.
        issue_any = s0_valid & adv          # (s0_valid is low outside COMPUTE)
        when_issued = Mux(s0_last, Mux(i_ltt, first_end, rw_one & (i_tleft <= 2 * R)),
                          (i_j == rw_m2) & i_ltt)
        m.d.sync += tile_end.eq(Mux(issue_any, when_issued, Mux(start, first_end, tile_end)))
        # ``rows_in`` is one register: the whole load in (``loaded_all``, which ``start``
        # clears), or the compare above (timing: ``loaded_all`` beside it made a fifth input
        # of the issue decision, a LUT more before the issue position's enables; 1024 lanes
        # on the 25F). It rises a cycle after ``loaded_all`` does, which costs a cycle only
        # when a tile waits for the command's last row.
        m.d.sync += rows_ge.eq(~start & (acts.loaded_all |
                                         (~need_moves & (acts.tokens >= i_need))))
        m.d.comb += rows_in.eq(rows_ge)

        # ---------------------------------------------------------------- pipeline s1, s2
        s1_valid, s1_last = Signal(), Signal()
        # (With planes: ``shift``, the chunk ends a plane but not its row.)
        s1_shift, s2_shift = Signal(), Signal()
        s1 = Signal(tile_layout(cfg))
        s2 = Signal(tile_layout(cfg))
        s3 = Signal(tile_layout(cfg))
        x_bus = Signal(data.ArrayLayout(L, R), reset_less=True)
        w_bus = Signal(data.ArrayLayout(L, C))
        with m.If(adv):
            m.d.sync += [s1_valid.eq(s0_valid), s1_last.eq(s0_last), s1.eq(s0),
                         s2_valid.eq(s1_valid), s2_last.eq(s1_last),
                         s2.eq(s1)]
            if planes:
                m.d.sync += [s1_shift.eq(i_wjlast & ~s0_last), s2_shift.eq(s1_shift)]
            # The tile's tags follow its chunks through the array's register stages.
            prev_valid, prev_last, prev = s2_valid, s2_last, s2
            for i in range(arr.latency(platform) - 1):
                sv, sl = Signal(name=f"pe_valid{i}"), Signal(name=f"pe_last{i}")
                st = Signal(tile_layout(cfg), name=f"pe_tile{i}")
                m.d.sync += [sv.eq(prev_valid), sl.eq(prev_last), st.eq(prev)]
                prev_valid, prev_last, prev = sv, sl, st
            m.d.sync += [s3_valid.eq(prev_valid), s3_last.eq(prev_last), s3.eq(prev)]
            m.d.sync += [x_bus[r].eq(acts.rd_data[r]) for r in range(R)]
            m.d.sync += [w_bus[col].eq(Mux(s1.half, weights.rd_data[1][col],
                                           weights.rd_data[0][col]))
                         for col in range(C)]
        s3_next_valid, s3_next_last = prev_valid, prev_last     # what s3 takes with ``adv``
        m.d.comb += [arr.x.eq(x_bus), arr.w.eq(w_bus), arr.valid.eq(s2_valid),
                     arr.last.eq(s2_last), arr.en.eq(adv)]
        if planes:
            m.d.comb += arr.shift.eq(s2_shift)

        # ---------------------------------------------------------------- capture and drain
        capture = Signal()
        m.d.comb += [capture.eq(adv & s3_valid & s3_last),
                     drain.start.eq(start), drain.thr_en.eq(thr_en), drain.xor.eq(op == Op.XOR),
                     drain.k.eq(kx), drain.capture.eq(capture), drain.sums.eq(arr.sum),
                     drain.tile.eq(s3), drain.thr.eq(weights.thr), drain.wpop.eq(weights.wpop)]
        m.d.comb += final_taken.eq(self.result.valid & self.result.ready &
                                   self.result.payload.last)
        # ``adv`` of the next cycle, from the next values of s3 and the drain's ``raw_full``.
        m.d.sync += adv.eq(~(Mux(adv, s3_next_valid, s3_valid) & Mux(adv, s3_next_last, s3_last) &
                             drain.raw_full_next))

        # ---------------------------------------------------------------- counters
        # (Each an EventCounter: on the UP5K one DSP block each, no logic cells.)
        kind = self._counter_kind or counter_kind(platform)
        events = {"busy": ~idle, "active": adv & s2_valid, "stall": ~adv,
                  "weight_wait": computing & ~s0_valid,
                  "backpressure": self.result.valid & ~self.result.ready}
        for name in COUNTERS:
            m.submodules[f"ctr_{name}"] = ctr = EventCounter(width=32, kind=kind)
            m.d.comb += [ctr.clear.eq(start), ctr.inc.eq(events[name]),
                         getattr(self.counters, name).eq(ctr.count)]
        return m
