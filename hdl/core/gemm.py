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

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CORE_COUNTERS, CoreConfig, Op
from ..lib.event_counter import COUNTER_KINDS, EventCounter, counter_kind
from ..lib.family import family
from ..lib.membank import MemoryBank
from ..lib.popcount import reduce_columns, register_columns, tree_depth, two_rows
from .array import ComputeArray

__all__ = ["GemmCore", "command_layout", "result_layout", "counters_layout", "COUNTERS"]

#: Performance counters, each 32 bits, cleared when a command is accepted.
COUNTERS = CORE_COUNTERS


def counters_layout() -> data.StructLayout:
    """Layout of the ``counters`` output: one 32-bit count per name in ``COUNTERS``."""
    return data.StructLayout({name: 32 for name in COUNTERS})


def command_layout(c: CoreConfig) -> data.StructLayout:
    """Layout of a ``cmd`` beat for this configuration."""
    return data.StructLayout({
        "op": Op, "threshold": 1,
        "t": unsigned(c.max_t.bit_length()),
        "n": unsigned(c.max_n.bit_length()),
        "k": unsigned(c.max_k.bit_length()),
    })


def result_layout(c: CoreConfig) -> data.StructLayout:
    """Layout of a ``result`` beat: ``ints`` (one row of C results, without thresholds) or
    ``bits`` (a whole R x C token tile, bit ``r * C + c``, with thresholds)."""
    return data.StructLayout({
        "ints": data.ArrayLayout(signed(c.result_width), c.cols),
        "bits": unsigned(c.rows * c.cols),
        "last": 1,
    })


def _tile_layout(c: CoreConfig) -> data.StructLayout:
    return data.StructLayout({
        "rows": range(c.rows + 1), "cols": range(c.cols + 1), "half": 1,
        "last_tt": 1, "last_nt": 1,
    })


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

        act_rd, act_wr = [], []
        # (``no_rw_check``: a row is read only once the loader has written it, and the loader
        # writes rows the issue stage has not reached; a read the same cycle as a write to its
        # address only happens while nothing is issued, and its word is not used.)
        for r in range(R):
            mem = memory.Memory(shape=L, depth=cfg.act_depth, init=[],
                                attrs={"no_rw_check": 1})
            m.submodules[f"act_bank{r}"] = mem
            act_wr.append(mem.write_port())
            act_rd.append(mem.read_port())
        # Weight buffer: for each half (ping-pong) and column, one bank of a tile row's chunks.
        w_bank = [[MemoryBank(width=L, depth=KWM, kind=cfg.weight_memory) for _ in range(C)]
                  for _ in range(2)]
        for h in range(2):
            for col in range(C):
                m.submodules[f"weight_h{h}_c{col}"] = w_bank[h][col]

        # Command registers.
        op = Signal(Op)
        thr_en = Signal()
        t = Signal(range(cfg.max_t + 1))
        n = Signal(range(cfg.max_n + 1))
        l_rest = Signal(range(cfg.max_n + 1))   # weight rows not yet in a loaded tile
        l_rest_ge, l_rest_le = Signal(), Signal()   # l_rest >= C, l_rest <= C (registers)
        k = Signal(range(cfg.max_k + 1))
        kw = Signal(range(KWM + 1))
        last_mask = Signal(L)
        start = Signal()

        # Ping-pong state. ``full[h]``: half h holds a tile the issue stage has not finished
        # reading (set by the loader, cleared by the tile's last issue). ``held[h]``: half h
        # (weights and thresholds) is still needed (set by the loader, cleared when the
        # tile's last results are captured). The loader refills only a half that is not held.
        full = Signal(2)
        held = Signal(2)
        tile_loaded = Signal(2)
        full_clr = Signal(2)
        held_clr = Signal(2)
        m.d.sync += [full.eq((full | tile_loaded) & ~full_clr),
                     held.eq((held | tile_loaded) & ~held_clr)]
        thr = [[Signal(signed(cfg.threshold_width), name=f"thr_{h}_{col}") for col in range(C)]
               for h in range(2)]
        # popcount(w) of each loaded weight row, for mdot = popcount(w) - popcount(p XOR w).
        wpop = [[Signal(cfg.acc_width, name=f"wpop_{h}_{col}") for col in range(C)]
                for h in range(2)]

        # Pipeline control: ``adv`` moves issue -> s1 -> s2 -> array (s3: the stage whose sums
        # the array gives, ``arr.latency()`` after s2) together.
        s2_valid, s2_last = Signal(), Signal()
        s3_valid, s3_last = Signal(), Signal()
        shadow_full = Signal()
        raw_full = Signal()
        # A tile's last chunk captures the array's sums (``raw``, then the results in the
        # shadow); it waits (and so does the whole pipeline) while ``raw`` still holds the
        # previous tile: ``adv = ~(s3_valid & s3_last & raw_full)``. ``adv`` enables every
        # register of the array, so it is a register itself, computed a cycle early from the
        # values those three take next (exactly; below, after the capture stage) (timing: a
        # decode in front of that fan-out set the whole design's Fmax in some placements).
        adv = Signal(init=1)

        # ---------------------------------------------------------------- main controller
        a_j = Signal(range(KWM))
        a_jlast = Signal()      # a_j is the row's last chunk (a register, not a_j == kw - 1)
        a_r = Signal(range(R))
        a_base = Signal(range(cfg.act_depth + KWM + 1))
        a_tok = Signal(range(cfg.max_t + 1))
        i_j = Signal(range(KWM))
        i_abase = Signal(range(cfg.act_depth + KWM + 1))
        i_half = Signal()
        s0_valid = Signal()
        s0 = Signal(_tile_layout(cfg))
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
        rows_in, rows_ge, need_moves, loaded_all = Signal(), Signal(), Signal(), Signal()
        kw_one = Signal()                           # K <= L: one chunk a row
        first_end = Signal()                        # kw_one & t_le_r: a tile of one issue
        # ceil(K/L) - 2: ``j + 1 == kw_m1`` as ``j == kw_m2`` (timing: no adder before the
        # compare; only used while a row has a chunk after ``j``, so kw >= 2 there).
        kw_m2 = Signal(range(KWM + 1))
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
        for r in range(R):
            m.d.comb += [act_rd[r].addr.eq(i_abase + i_j), act_rd[r].en.eq(adv)]
        for h in range(2):
            for col in range(C):
                m.d.comb += [w_bank[h][col].raddr.eq(i_j), w_bank[h][col].ren.eq(adv)]

        m.d.sync += self.cmd_error.eq(0)
        pend = Signal(command_layout(cfg))
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
                    m.d.sync += [pend.eq(p),
                                 self.cmd_error.eq((p.t == 0) | (p.t > cfg.max_t) | (p.n == 0) |
                                                   (p.n > cfg.max_n) | (p.k == 0) |
                                                   (p.k > cfg.max_k))]
                    m.next = "CHECK"
            with m.State("CHECK"):
                # ``K - 1`` (K >= 1 once the check passes): ``ceil(K / L) - 1`` is its chunk
                # part and the last chunk's top valid bit ``(K - 1) mod L`` its lane part.
                m.d.sync += k_m1.eq(pend.k - 1)
                # The command's other compares too, so ACCEPT only copies registers (timing);
                # those the command uses as it runs stay in these registers until the next.
                m.d.sync += [first_need.eq(Mux(pend.t >= R, R, pend.t)),
                             t_le_r.eq(pend.t <= R), t_m1.eq(pend.t - 1),
                             kw_one.eq(pend.k <= L), first_end.eq((pend.k <= L) & (pend.t <= R)),
                             c_nmin.eq(Mux(pend.n >= C, C, pend.n)), c_nle.eq(pend.n <= C),
                             c_nge.eq(pend.n >= C)]
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
                    op.eq(p.op), thr_en.eq(p.threshold), t.eq(p.t), n.eq(p.n), k.eq(p.k),
                    l_rest.eq(p.n), l_rest_ge.eq(c_nge), l_rest_le.eq(c_nle),
                    kw.eq(kw_m1 + 1),
                    last_mask.eq(Cat(*(top >= i for i in range(L)))),
                    a_j.eq(0), a_r.eq(0), a_base.eq(0), a_tok.eq(0), loaded_all.eq(0),
                    i_j.eq(0), i_abase.eq(0),
                    i_tleft.eq(p.t), i_nleft.eq(p.n),
                    i_rows.eq(first_need),
                    i_cols.eq(c_nmin), i_lnt.eq(c_nle),
                    i_need.eq(first_need), kw_m2.eq(kw_m1 - 1),
                    a_jlast.eq(kw_one),
                ]
                m.d.comb += [i_half_next.eq(0), i_ltt_next.eq(t_le_r), i_jlast_next.eq(kw_one)]
                # Each result field loads only in its own mode (timing: no mode multiplexer in
                # front of the registers); the other stays at the 0 set here.
                m.d.sync += [self.result.payload.ints.eq(0), self.result.payload.bits.eq(0)]
                m.d.comb += start.eq(1)
                m.next = "COMPUTE"

            with m.State("COMPUTE"):
                # A token tile may issue once its rows are in the activation buffer
                # (``a_tok >= i_need``). That compare is registered (timing: it fed every
                # issue-stage enable): ``rows_ge`` is last cycle's answer, cleared the cycle
                # after ``i_need`` moves, so it is never true too early (``a_tok`` only grows);
                # it can be one cycle late, and not at all once the whole load is in. So the
                # first channel tile overlaps the activation load.
                m.d.comb += [s0_valid.eq(full_cur & rows_in), computing.eq(1)]
                issue = s0_valid & adv
                with m.If(issue & s0_last):
                    m.d.comb += [need_moves.eq(1), i_jlast_next.eq(kw_one)]
                    m.d.sync += i_j.eq(0)
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
                    m.d.sync += [i_abase.eq(i_abase + kw),
                                 i_tleft.eq(i_tleft - R),
                                 i_rows.eq(Mux(i_tleft >= 2 * R, R, i_tleft - R)),
                                 i_need.eq(Mux(i_tleft >= 2 * R, i_need + R, t))]
                with m.If(issue & ~s0_last):
                    m.d.comb += i_jlast_next.eq(i_j == kw_m2)
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
        when_issued = Mux(s0_last, Mux(i_ltt, first_end, kw_one & (i_tleft <= 2 * R)),
                          (i_j == kw_m2) & i_ltt)
        m.d.sync += tile_end.eq(Mux(issue_any, when_issued, Mux(start, first_end, tile_end)))
        m.d.sync += rows_ge.eq(~need_moves & ~start & (a_tok >= i_need))
        m.d.comb += rows_in.eq(loaded_all | rows_ge)

        # ---------------------------------------------------------------- activation loader
        # Row t goes to bank t mod R at address (t div R) * ceil(K/L) + chunk.
        # A row's last chunk is masked as it is written (padding bits 0, as in the weight
        # buffer), so the array takes the buffer's words as they are read.
        for r in range(R):
            m.d.comb += [act_wr[r].addr.eq(a_base + a_j),
                         act_wr[r].data.eq(self.act.payload &
                                           Mux(a_jlast, last_mask, (1 << L) - 1))]
        with m.FSM(name="act_loader"):
            with m.State("IDLE"):
                with m.If(start):
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.act.ready.eq(1)
                for r in range(R):
                    m.d.comb += act_wr[r].en.eq(self.act.valid & (a_r == r))
                with m.If(self.act.valid):
                    with m.If(a_jlast):
                        m.d.sync += [a_j.eq(0), a_jlast.eq(kw_one), a_tok.eq(a_tok + 1)]
                        with m.If(a_r == R - 1):
                            m.d.sync += [a_r.eq(0), a_base.eq(a_base + kw)]
                        with m.Else():
                            m.d.sync += a_r.eq(a_r + 1)
                        with m.If(a_tok == t_m1):
                            m.d.sync += loaded_all.eq(1)
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [a_j.eq(a_j + 1), a_jlast.eq(a_j == kw_m2)]

        # ---------------------------------------------------------------- weight loader
        l_half = Signal()
        l_c = Signal(range(C))
        l_j = Signal(range(KWM))
        # Rows of the tile being loaded (set while waiting for it, from ``l_rest``), and a
        # down-counter of its rows: the last-row and last-tile decisions start from registers.
        l_tile_rows = Signal(range(C + 1))
        l_rows = Signal(range(C + 1))
        l_last_row = Signal()
        l_last_tile = Signal()
        l_pop = Signal(cfg.acc_width)
        l_chunk = Signal(L)
        # ``l_j == ceil(K/L) - 1``, a register like ``i_jlast`` (timing: the compare fed the
        # loader's enables).
        l_jlast = Signal()
        m.d.comb += l_chunk.eq(self.weight.payload & Mux(l_jlast, last_mask, (1 << L) - 1))
        # popcount(w) of each row, four stages behind the loader (registered chunk, half the
        # tree, its two rows, then the row sum): wpop is read only when the tile's results
        # leave the array, many cycles after its last chunk is loaded.
        p_valid, p_first, p_last = Signal(), Signal(), Signal()
        # Stage p also writes the chunk into its bank (timing: the weight stream's valid
        # went straight to the banks' write enables, across the array). A tile's last chunk is
        # written the cycle after it is taken, when TILE_DONE marks the half full: the issue
        # stage reads it a cycle later still.
        p_chunk = Signal(L)
        p_j = Signal(range(KWM))
        p_wen = Signal(2 * C)
        p_half, p_c = Signal(), Signal(range(C))
        m.d.sync += [p_valid.eq(0), p_wen.eq(0)]
        # A second stage (q) holds the chunk's count (timing: the popcount tree and the row
        # sum's adder in different cycles).
        q_valid, q_first, q_last, q_half = Signal(), Signal(), Signal(), Signal()
        q_c = Signal(range(C))
        # (The tree's two carry-save rows, not their sum: the sum's adder merges into the
        # row sum's, and an iCE40's LUT tree alone is 8 levels deep.)
        q_rows = [Signal(L.bit_length(), name=f"q_rows{i}") for i in range(2)]
        # Between them, stage o holds the tree's columns after half its levels of full adders
        # (timing: 8 levels for 32 lanes, with the routing of a LUT4 each, were a critical
        # path on ECP5).
        o_valid, o_first, o_last, o_half = Signal(), Signal(), Signal(), Signal()
        o_c = Signal(range(C))
        width = L.bit_length()
        columns = reduce_columns(m, {0: [p_chunk[i] for i in range(L)]}, width, "wpa",
                                 levels=tree_depth(L) // 2)
        staged = register_columns(m, columns, "o")
        m.d.sync += [o_valid.eq(p_valid), o_first.eq(p_first), o_last.eq(p_last),
                     o_half.eq(p_half), o_c.eq(p_c)]
        m.d.sync += [q_valid.eq(o_valid), q_first.eq(o_first), q_last.eq(o_last),
                     q_half.eq(o_half), q_c.eq(o_c)]
        for q_row, row in zip(q_rows, two_rows(reduce_columns(m, staged, width, "wpb"), width),
                              strict=True):
            m.d.sync += q_row.eq(row)
        with m.If(q_valid):
            row_pop = Mux(q_first, 0, l_pop) + q_rows[0] + q_rows[1]
            m.d.sync += l_pop.eq(row_pop)
            with m.If(q_last):
                for h in range(2):
                    for col in range(C):
                        with m.If((q_half == h) & (q_c == col)):
                            m.d.sync += wpop[h][col].eq(row_pop)
        m.d.comb += l_last_row.eq(l_rows == 1)
        for h in range(2):
            for col in range(C):
                m.d.comb += [w_bank[h][col].waddr.eq(p_j),
                             w_bank[h][col].wdata.eq(p_chunk),
                             w_bank[h][col].wen.eq(p_wen[h * C + col])]
        with m.FSM(name="loader"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [l_half.eq(0), l_c.eq(0), l_j.eq(0), l_jlast.eq(kw_one)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                rows = Mux(l_rest_ge, C, l_rest)
                m.d.sync += [l_tile_rows.eq(rows), l_rows.eq(rows), l_last_tile.eq(l_rest_le)]
                with m.If(~held.bit_select(l_half, 1)):
                    m.next = "WEIGHTS"
            with m.State("WEIGHTS"):
                m.d.comb += self.weight.ready.eq(1)
                for h in range(2):
                    for col in range(C):
                        m.d.sync += p_wen[h * C + col].eq(self.weight.valid & (l_c == col) &
                                                          (l_half == h))
                with m.If(self.weight.valid):
                    m.d.sync += [p_valid.eq(1), p_first.eq(l_j == 0), p_last.eq(l_jlast),
                                 p_chunk.eq(l_chunk), p_half.eq(l_half), p_c.eq(l_c),
                                 p_j.eq(l_j)]
                    with m.If(l_jlast):
                        m.d.sync += [l_j.eq(0), l_jlast.eq(kw_one)]
                        with m.If(l_last_row):
                            m.d.sync += [l_c.eq(0), l_rows.eq(l_tile_rows)]
                            m.next = "THRESH"
                            with m.If(~thr_en):
                                m.next = "TILE_DONE"
                        with m.Else():
                            m.d.sync += [l_c.eq(l_c + 1), l_rows.eq(l_rows - 1)]
                    with m.Else():
                        m.d.sync += [l_j.eq(l_j + 1), l_jlast.eq(l_j == kw_m2)]
            with m.State("THRESH"):
                m.d.comb += self.thresh.ready.eq(1)
                with m.If(self.thresh.valid):
                    for h in range(2):
                        for col in range(C):
                            with m.If((l_half == h) & (l_c == col)):
                                m.d.sync += thr[h][col].eq(self.thresh.payload)
                    with m.If(l_last_row):
                        m.d.sync += l_c.eq(0)
                        m.next = "TILE_DONE"
                    with m.Else():
                        m.d.sync += [l_c.eq(l_c + 1), l_rows.eq(l_rows - 1)]
            with m.State("TILE_DONE"):
                m.d.comb += tile_loaded.bit_select(l_half, 1).eq(1)
                m.d.sync += [l_half.eq(~l_half), l_rest.eq(l_rest - C),
                             l_rest_ge.eq(l_rest >= 2 * C), l_rest_le.eq(l_rest <= 2 * C)]
                with m.If(l_last_tile):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "WAIT"

        # ---------------------------------------------------------------- pipeline s1, s2
        s1_valid, s1_last = Signal(), Signal()
        s1 = Signal(_tile_layout(cfg))
        s2 = Signal(_tile_layout(cfg))
        s3 = Signal(_tile_layout(cfg))
        x_bus = Signal(data.ArrayLayout(L, R), reset_less=True)
        w_bus = Signal(data.ArrayLayout(L, C))
        with m.If(adv):
            m.d.sync += [s1_valid.eq(s0_valid), s1_last.eq(s0_last), s1.eq(s0),
                         s2_valid.eq(s1_valid), s2_last.eq(s1_last),
                         s2.eq(s1)]
            # The tile's tags follow its chunks through the array's register stages.
            prev_valid, prev_last, prev = s2_valid, s2_last, s2
            for i in range(arr.latency(platform) - 1):
                sv, sl = Signal(name=f"pe_valid{i}"), Signal(name=f"pe_last{i}")
                st = Signal(_tile_layout(cfg), name=f"pe_tile{i}")
                m.d.sync += [sv.eq(prev_valid), sl.eq(prev_last), st.eq(prev)]
                prev_valid, prev_last, prev = sv, sl, st
            m.d.sync += [s3_valid.eq(prev_valid), s3_last.eq(prev_last), s3.eq(prev)]
            m.d.sync += [x_bus[r].eq(act_rd[r].data) for r in range(R)]
            m.d.sync += [w_bus[col].eq(Mux(s1.half, w_bank[1][col].rdata, w_bank[0][col].rdata))
                         for col in range(C)]
        s3_next_valid, s3_next_last = prev_valid, prev_last     # what s3 takes with ``adv``
        m.d.comb += [arr.x.eq(x_bus), arr.w.eq(w_bus), arr.valid.eq(s2_valid),
                     arr.last.eq(s2_last), arr.en.eq(adv)]

        # ---------------------------------------------------------------- capture
        done = s3
        capture = Signal()
        m.d.comb += capture.eq(adv & s3_valid & s3_last)

        # Two stages: the capture takes the sums (``raw``); the cycle after, the results are
        # computed from them (``diff``), and the cycle after that, once the shadow is free,
        # they move into the shadow: ``value = K - 2 * acc``
        # (XOR, the dot product) or ``popcount(w) - acc`` (AND, mdot; see pe.py), one subtract
        # per element, so the drain only picks and compares registers (timing: neither the
        # accumulator's adder and a subtract, nor a subtract and the drain's enables, in one
        # cycle).
        bw = max(cfg.result_width, cfg.threshold_width) + 2
        # (Data registers without reset: only ``raw_full`` and ``shadow_full`` say what they
        # hold, and a reset would become logic in front of them.)
        raw = Signal(data.ArrayLayout(data.ArrayLayout(cfg.acc_width, C), R), reset_less=True)
        raw_thr = Signal(data.ArrayLayout(signed(bw), C), reset_less=True)
        raw_wpop = Signal(data.ArrayLayout(signed(bw), C), reset_less=True)
        raw_tile = Signal(_tile_layout(cfg), reset_less=True)
        shadow = Signal(data.ArrayLayout(data.ArrayLayout(signed(bw), C), R), reset_less=True)
        shadow_thr = Signal(data.ArrayLayout(signed(bw), C), reset_less=True)
        sh = Signal(_tile_layout(cfg), reset_less=True)
        with m.If(capture):
            m.d.sync += [raw.eq(arr.sum), raw_tile.eq(done), raw_full.eq(1)]
            for col in range(C):
                m.d.sync += [raw_thr[col].eq(Mux(done.half, thr[1][col], thr[0][col])),
                             raw_wpop[col].eq(Mux(done.half, wpop[1][col], wpop[0][col]))]
            with m.If(done.last_tt):
                m.d.comb += held_clr.bit_select(done.half, 1).eq(1)
        # One subtract: ``base - acc * scale``, base K (XOR) or popcount(w) (AND).
        xor = Signal()
        base = Signal(data.ArrayLayout(signed(bw), C))
        m.d.comb += xor.eq(op == Op.XOR)
        for col in range(C):
            m.d.comb += base[col].eq(Mux(xor, k, raw_wpop[col]))
        # With the shadow, the drain's masks and last row (timing: no compare in the drain):
        # ``sh_col[c] = c < cols``, ``sh_row[r] = r < rows``, ``sh_rlast = rows - 1``.
        sh_col = Signal(C, reset_less=True)
        sh_row = Signal(R, reset_less=True)
        sh_rlast = Signal(range(R), reset_less=True)
        # With ``result_stage``, the subtracts run every cycle into ``diff`` (no enable: the
        # shadow's load enable, which fans out to every element, was in front of them);
        # ``diff_ok``: ``raw`` did not change last cycle, so ``diff`` is its results.
        stage = self._result_stage
        if stage is None:
            stage = family(platform) != "ice40"
        diff = Signal(data.ArrayLayout(data.ArrayLayout(signed(bw), C), R), reset_less=True)
        results = Signal.like(diff)
        for col in range(C):
            for r in range(R):
                acc = Signal(signed(bw), name=f"acc{r}_{col}")
                m.d.comb += acc.eq(raw[r][col])
                scaled = Signal(signed(bw), name=f"scaled{r}_{col}")
                m.d.comb += scaled.eq(Mux(xor, acc << 1, acc))
                m.d.comb += results[r][col].eq(base[col] - scaled)
        diff_ok = Signal()
        if stage:
            m.d.sync += [diff.eq(results), diff_ok.eq(~capture)]
        else:
            m.d.comb += [diff.eq(results), diff_ok.eq(1)]
        with m.If(raw_full & diff_ok & ~shadow_full):
            m.d.sync += [sh.eq(raw_tile), shadow_thr.eq(raw_thr), shadow_full.eq(1),
                         shadow.eq(diff),
                         sh_col.eq(Cat(*(raw_tile.cols > col for col in range(C)))),
                         sh_row.eq(Cat(*(raw_tile.rows > r for r in range(R)))),
                         sh_rlast.eq(raw_tile.rows - 1)]
            with m.If(~capture):
                m.d.sync += raw_full.eq(0)
        # ``adv`` of the next cycle, from the next values of s3 and ``raw_full``.
        raw_full_next = capture | (raw_full & ~(diff_ok & ~shadow_full))
        m.d.sync += adv.eq(~(Mux(adv, s3_next_valid, s3_valid) & Mux(adv, s3_next_last, s3_last) &
                             raw_full_next))

        # ---------------------------------------------------------------- drain + post-op
        # Integers: one beat per row. Bits: one beat per token tile, ``value >= thr``.
        d_r = Signal(range(R))
        last_row = Signal()
        m.d.comb += last_row.eq(d_r == sh_rlast)
        out_free = ~self.result.valid | self.result.ready
        m.d.comb += final_taken.eq(self.result.valid & self.result.ready &
                                   self.result.payload.last)
        with m.If(self.result.ready):
            m.d.sync += self.result.valid.eq(0)
        with m.If(out_free & shadow_full & thr_en):
            m.d.sync += [self.result.valid.eq(1),
                         self.result.payload.last.eq(sh.last_nt & sh.last_tt),
                         shadow_full.eq(0)]
            for r in range(R):
                for col in range(C):
                    m.d.sync += self.result.payload.bits[r * C + col].eq(
                        sh_row[r] & sh_col[col] & (shadow[r][col] >= shadow_thr[col]))
        with m.Elif(out_free & shadow_full):
            m.d.sync += [self.result.valid.eq(1),
                         self.result.payload.last.eq(sh.last_nt & sh.last_tt & last_row)]
            for col in range(C):
                m.d.sync += self.result.payload.ints[col].eq(
                    Mux(sh_col[col], shadow[d_r][col], 0))
            with m.If(last_row):
                m.d.sync += [d_r.eq(0), shadow_full.eq(0)]
            with m.Else():
                m.d.sync += d_r.eq(d_r + 1)

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
