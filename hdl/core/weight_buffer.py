"""The GEMM core's ping-pong weight buffer and its loader: weight tiles, their thresholds and
the popcount of each weight row.

``start`` (one cycle) begins a command of ``n`` weight rows (``n_ge_c``: ``n >= C``,
``n_le_c``: ``n <= C``). The loader fills the halves in turn, one tile of ``C`` rows (the last
tile ``N mod C``) each: row ``c`` of a tile goes to column bank ``c`` of the half, one chunk a
cycle from ``weight`` (the row's last chunk masked with ``last_mask``); with ``thr_en`` the
tile's ``C`` thresholds follow on ``thresh``. It refills a half only while ``held`` (from the
core: a tile there is still needed) is low for it, and ``tile_loaded`` pulses for the half
when its tile is complete. ``wpop`` holds each row's popcount (for ``mdot``), four cycles
behind its last chunk; ``thr`` each row's threshold. The issue stage reads every bank at
``rd_addr`` (``rd_en``; read latency 1) into ``rd_data``.

The command's shape (``kw_one``, ``kw_m2``, ``last_mask``, ``thr_en``) comes from the core's
registers and holds while the command runs.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CoreConfig
from ..lib.membank import MemoryBank
from ..lib.popcount import reduce_columns, register_columns, tree_depth, two_rows

__all__ = ["WeightBuffer"]


def _halves(shape, cols: int) -> data.ArrayLayout:
    return data.ArrayLayout(data.ArrayLayout(shape, cols), 2)


class WeightBuffer(wiring.Component):
    """Members
    -------
    weight : In(stream.Signature(lanes))
    thresh : In(stream.Signature(signed(threshold_width)))
    start : In(1);  n : In(range(max_n + 1));  n_ge_c, n_le_c : In(1)
    kw_one : In(1);  kw_m2 : In(range(max_chunks + 1));  last_mask : In(lanes);  thr_en : In(1)
    held : In(2);  tile_loaded : Out(2)
    rd_addr : In(range(max_chunks));  rd_en : In(1)
    rd_data : Out(ArrayLayout(ArrayLayout(lanes, cols), 2))            (half, column)
    thr : Out(ArrayLayout(ArrayLayout(signed(threshold_width), cols), 2))
    wpop : Out(ArrayLayout(ArrayLayout(acc_width, cols), 2))
    """

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self._cfg = c = config
        tw = signed(c.threshold_width)
        super().__init__({
            "weight": In(stream.Signature(c.lanes)), "thresh": In(stream.Signature(tw)),
            "start": In(1), "n": In(range(c.max_n + 1)), "n_ge_c": In(1), "n_le_c": In(1),
            "kw_one": In(1), "kw_m2": In(range(c.max_chunks + 1)), "last_mask": In(c.lanes),
            "thr_en": In(1), "held": In(2), "tile_loaded": Out(2),
            "rd_addr": In(range(c.max_chunks)), "rd_en": In(1),
            "rd_data": Out(_halves(c.lanes, c.cols)), "thr": Out(_halves(tw, c.cols)),
            "wpop": Out(_halves(c.acc_width, c.cols)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        C, L, KWM = cfg.cols, cfg.lanes, cfg.max_chunks
        # For each half (ping-pong) and column, one bank of a tile row's chunks.
        w_bank = [[MemoryBank(width=L, depth=KWM, kind=cfg.weight_memory) for _ in range(C)]
                  for _ in range(2)]
        for h in range(2):
            for col in range(C):
                m.submodules[f"weight_h{h}_c{col}"] = bank = w_bank[h][col]
                m.d.comb += [bank.raddr.eq(self.rd_addr), bank.ren.eq(self.rd_en),
                             self.rd_data[h][col].eq(bank.rdata)]
        thr, wpop = self.thr, self.wpop
        kw_one, kw_m2, last_mask = self.kw_one, self.kw_m2, self.last_mask

        l_rest = Signal(range(cfg.max_n + 1))   # weight rows not yet in a loaded tile
        l_rest_ge, l_rest_le = Signal(), Signal()   # l_rest >= C, l_rest <= C (registers)
        with m.If(self.start):
            m.d.sync += [l_rest.eq(self.n), l_rest_ge.eq(self.n_ge_c),
                         l_rest_le.eq(self.n_le_c)]
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
        # ``l_j == ceil(K/L) - 1``, a register (timing: the compare fed the loader's enables).
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
                with m.If(self.start):
                    m.d.sync += [l_half.eq(0), l_c.eq(0), l_j.eq(0), l_jlast.eq(kw_one)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                rows = Mux(l_rest_ge, C, l_rest)
                m.d.sync += [l_tile_rows.eq(rows), l_rows.eq(rows), l_last_tile.eq(l_rest_le)]
                with m.If(~self.held.bit_select(l_half, 1)):
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
                            with m.If(~self.thr_en):
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
                m.d.comb += self.tile_loaded.bit_select(l_half, 1).eq(1)
                m.d.sync += [l_half.eq(~l_half), l_rest.eq(l_rest - C),
                             l_rest_ge.eq(l_rest >= 2 * C), l_rest_le.eq(l_rest <= 2 * C)]
                with m.If(l_last_tile):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "WAIT"
        return m
