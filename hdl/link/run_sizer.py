"""A RUN's regions sized and checked against the stores before the GEMM runner starts.

``RunSizer`` takes a RUN's arguments (``args``, the RUN fields of the argument register, checked
for range by ``ArgumentDecoder``) when ``start`` is high. It counts the activation and weight
rows (``ceil(K / L)`` words each) and the token and channel tiles one row a cycle, then the
result beats one channel tile a cycle, then compares each region's end with its store's
depth. ``sized`` is high the cycle the comparisons are registered; from the cycle after,
``over`` says whether any region or the result beats lie beyond their store, and ``params``
(``run_layout(dev)``: the command, its bases and word counts) is the runner's command. Both
hold until the next ``start``. An activation row of ``A``-bit levels (RUN's ``flags``) is ``A``
planes of ``ceil(K / L)`` words.

Latency: ``max(T, N) + ceil(N / cols) + 3`` cycles from ``start`` to ``sized``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from ...host.protocol import RUN_BITS_MASK, RUN_BITS_SHIFT, Opcode
from ..core.gemm_layouts import times_bits
from ..core.gemm_runner import run_layout
from .arguments import args_layout

__all__ = ["RunSizer"]


class RunSizer(wiring.Component):
    """Members
    -------
    start : In(1);  args : In(RUN's argument fields)
    sized : Out(1);  over : Out(1);  params : Out(run_layout(dev))
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev)
        self._dev = dev
        super().__init__({"start": In(1), "args": In(args_layout(Opcode.RUN)),
                          "sized": Out(1), "over": Out(1), "params": Out(run_layout(dev))})

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        R, C = c.rows, c.cols
        a = self.args
        rp = Signal(run_layout(dev))
        kw = Signal(range(c.max_chunks + 1))
        # Rows still to count after this one (down-counters: timing), and whether this one
        # counts: ``t_more``, ``n_more``; then the token-tile rows still to add to ``beats``.
        t_rem, n_rem = Signal(range(c.max_t + 1)), Signal(range(c.max_n + 1))
        t_more, n_more = Signal(), Signal()
        b_rem, b_more = Signal(range(c.max_n + 1)), Signal()
        t_mod, t_tiles = Signal(range(R)), Signal(range(c.max_t + 1))
        n_mod, n_tiles = Signal(range(C)), Signal(range(c.max_n + 1))
        act_need = Signal(range(c.max_t * c.max_chunks + 1))
        w_need = Signal(range(c.max_n * c.max_chunks + 1))
        beats = Signal(range(-(-c.max_n // C) * c.max_t + 1))
        per_tile = Signal(range(c.max_t + 1))
        size_over = Signal(4)           # the regions and the beats beyond their stores
        # A region's end (SIZE_BEATS), compared with the store's depth in SIZE_CHECK: each as
        # wide as its store's depth or its row count, whichever is wider, plus one.
        run_ends = [Signal(max(depth.bit_length(), most.bit_length()) + 1, name=f"run_end_{name}")
                    for name, depth, most in (
                        ("act", dev.act_words, c.max_t * c.max_chunks),
                        ("weight", dev.weight_words, c.max_n * c.max_chunks),
                        ("thresh", dev.thresh_words, c.max_n))]
        m.d.comb += [self.params.eq(rp), self.over.eq(size_over.any()),
                     self.params.act_base.eq(a.act_base), self.params.act_count.eq(act_need),
                     self.params.weight_base.eq(a.weight_base),
                     self.params.weight_count.eq(w_need),
                     self.params.thresh_base.eq(a.thresh_base),
                     self.params.thresh_count.eq(rp.n)]

        # A new command's registers load with ``start`` whatever the state (timing: ``start``
        # comes only while idle).
        # An activation row's words: ``A`` planes of ``ceil(K / L)`` (A = 1 without planes).
        rw = kw
        if c.max_bits > 1:
            rw = Signal(range(c.max_chunks + 1))
            kwc = Signal(range(c.max_chunks + 1))
            a_m1 = Signal(2)
            m.d.comb += [kwc.eq((a.k + c.lanes - 1) >> c.lane_bits),
                         a_m1.eq((a.flags & RUN_BITS_MASK) >> RUN_BITS_SHIFT)]
            with m.If(self.start):
                m.d.sync += [rp.bits_m1.eq(a_m1),
                             rw.eq(times_bits(kwc, a_m1))]
        with m.If(self.start):
            m.d.sync += [
                rp.op.eq(a.op), rp.threshold.eq(a.flags[0]),
                rp.t.eq(a.t), rp.n.eq(a.n), rp.k.eq(a.k),
                kw.eq((a.k + c.lanes - 1) >> c.lane_bits),
                t_rem.eq(a.t - 1), n_rem.eq(a.n - 1),
                t_more.eq(1), n_more.eq(1),             # (t, n >= 1 here)
                t_mod.eq(0), t_tiles.eq(0), n_mod.eq(0),
                n_tiles.eq(0), act_need.eq(0), w_need.eq(0), beats.eq(0),
            ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SIZE"
            with m.State("SIZE"):
                # Rows of the activations and weights (ceil(K / L) words each) and tiles of
                # tokens and outputs, counted one row a cycle.
                for rem, more, need, mod, tiles, tile, words in (
                        (t_rem, t_more, act_need, t_mod, t_tiles, R, rw),
                        (n_rem, n_more, w_need, n_mod, n_tiles, C, kw)):
                    m.d.sync += [rem.eq(rem - 1), more.eq(more & (rem != 0))]
                    with m.If(more):
                        m.d.sync += [need.eq(need + words),
                                     mod.eq(Mux(mod == tile - 1, 0, mod + 1))]
                        with m.If(mod == 0):
                            m.d.sync += tiles.eq(tiles + 1)
                with m.If(~t_more & ~n_more):
                    # (n_tiles >= 1: n >= 1.)
                    m.d.sync += [b_rem.eq(n_tiles), b_more.eq(1),
                                 per_tile.eq(Mux(rp.threshold, t_tiles, rp.t))]
                    m.next = "SIZE_BEATS"
            with m.State("SIZE_BEATS"):
                with m.If(b_more):
                    m.d.sync += [beats.eq(beats + per_tile), b_rem.eq(b_rem - 1),
                                 b_more.eq(b_rem != 1)]
                with m.Else():
                    # The regions' ends into registers; SIZE_CHECK compares them (timing: no
                    # path through an adder and a compare into the decision).
                    for end, (base, need, depth) in zip(run_ends, (
                            (a.act_base, act_need, dev.act_words),
                            (a.weight_base, w_need, dev.weight_words),
                            (a.thresh_base, rp.n, dev.thresh_words)), strict=True):
                        # Only as wide as the store needs: a base beyond it ends past it.
                        b = depth.bit_length()
                        m.d.sync += end.eq(Mux((base >> b).any(), depth + 1, base[:b] + need))
                    with m.If(~rp.threshold):
                        m.d.sync += run_ends[2].eq(0)
                    m.next = "SIZE_CHECK"
            with m.State("SIZE_CHECK"):
                # Each compare into its own flag; ``over`` ORs them (timing).
                m.d.comb += self.sized.eq(1)
                m.d.sync += size_over.eq(Cat(run_ends[0] > dev.act_words,
                                             run_ends[1] > dev.weight_words,
                                             run_ends[2] > dev.thresh_words,
                                             beats > dev.result_beats))
                m.next = "IDLE"
        return m
