"""The GEMM core's results: a tile's sums captured from the array, turned into results, drained.

``capture`` (one cycle; the tile's last chunk leaves the array) takes the array's ``sums``, the
tile's tags ``tile`` and its half's thresholds and weight popcounts into ``raw``. The results
follow, one subtract per element: ``value = K - 2 * acc`` (``xor``: the dot product) or
``popcount(w) - acc`` (``mdot``); with ``result_stage`` a cycle later (every cycle, without an
enable: timing), and each half's threshold limits are registered every cycle from its
thresholds, so a half's thresholds must be steady a cycle before a capture of its tile (the
weight buffer writes a half only while no tile holds it). They move into the shadow once it
is free, and the drain sends them on ``result``: with ``thr_en`` one beat per token tile, bit
``r * C + c`` set when ``value >= thr``; without, one beat of ``C`` integers per token row.
Rows and columns beyond the tile's are 0; ``last`` marks the final beat of the command (the
tile's ``last_tt`` and ``last_nt``).

``raw_full_next`` is whether ``raw`` holds a tile next cycle, from which the core computes
its pipeline advance; ``held_clr`` pulses for a half whose last token tile is captured.
``start`` (one cycle, the command's acceptance) clears the result payload.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CoreConfig
from .gemm_layouts import result_layout, tile_layout

__all__ = ["ResultDrain"]


class ResultDrain(wiring.Component):
    """Members
    -------
    start : In(1);  thr_en : In(1);  xor : In(1);  k : In(range(result_bound + 1))
        (``L * K`` for activations of ``L = 2^A - 1``: ``value = L K - 2 acc``)
    capture : In(1);  sums : In(ArrayLayout(ArrayLayout(acc_width, cols), rows))
    tile : In(tile_layout(config))
    thr : In(ArrayLayout(ArrayLayout(signed(threshold_width), cols), 2))
    wpop : In(ArrayLayout(ArrayLayout(acc_width, cols), 2))
    result : Out(stream.Signature(result_layout(config)))
    raw_full_next : Out(1);  held_clr : Out(2)
    """

    def __init__(self, config: CoreConfig, *, result_stage: bool):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if not isinstance(result_stage, bool):
            raise TypeError(f"result_stage must be True or False, not {result_stage!r}")
        self._cfg = c = config
        self._stage = result_stage
        halves = lambda shape: data.ArrayLayout(data.ArrayLayout(shape, c.cols), 2)  # noqa: E731
        super().__init__({
            "start": In(1), "thr_en": In(1), "xor": In(1), "k": In(range(c.result_bound + 1)),
            "capture": In(1),
            "sums": In(data.ArrayLayout(data.ArrayLayout(c.acc_width, c.cols), c.rows)),
            "tile": In(tile_layout(c)),
            "thr": In(halves(signed(c.threshold_width))), "wpop": In(halves(c.acc_width)),
            "result": Out(stream.Signature(result_layout(c))),
            "raw_full_next": Out(1), "held_clr": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        capture, done = self.capture, self.tile
        # Two stages: the capture takes the sums (``raw``); the cycle after, the results are
        # computed from them (``diff``), and the cycle after that, once the shadow is free,
        # they move into the shadow (timing: neither the accumulator's adder and a subtract,
        # nor a subtract and the drain's enables, in one cycle).
        bw = max(cfg.result_width, cfg.threshold_width) + 2
        # (Data registers without reset: only ``raw_full`` and ``shadow_full`` say what they
        # hold, and a reset would become logic in front of them.)
        raw_full, shadow_full = Signal(), Signal()
        raw = Signal(data.ArrayLayout(data.ArrayLayout(cfg.acc_width, C), R), reset_less=True)
        # The threshold compare runs beside the subtract, straight from ``raw``, against a
        # limit taken at capture (timing: after the subtract, or between the shadow and the
        # drain's registers, it set the 25F's Fmax): ``value >= thr`` is ``acc <= lim`` with
        # ``lim = floor((K - thr) / 2)`` (XOR) or ``popcount(w) - thr`` (AND).
        raw_lim = Signal(data.ArrayLayout(signed(bw + 1), C), reset_less=True)
        raw_wpop = Signal(data.ArrayLayout(signed(bw), C), reset_less=True)
        raw_tile = Signal(tile_layout(cfg), reset_less=True)
        shadow = Signal(data.ArrayLayout(data.ArrayLayout(signed(bw), C), R), reset_less=True)
        # The threshold compares with the tile's rows and columns:
        # ``shadow_ge[r][c] = r < rows & c < cols & value >= thr``.
        shadow_ge = Signal(data.ArrayLayout(C, R), reset_less=True)
        sh = Signal(tile_layout(cfg), reset_less=True)
        # The product's kind, in a register of the drain's own (timing: the core's ``op`` was
        # far from the elements it selects for; it is steady long before a capture).
        xor = Signal()
        m.d.sync += xor.eq(self.xor)
        def limit(thr, wpop, name):
            lim_xor = Signal(signed(bw + 1), name=f"lim_xor{name}")
            m.d.comb += lim_xor.eq(self.k - thr)
            return Mux(xor, lim_xor >> 1, wpop - thr)

        if self._stage:
            # Each half's limits, registered every cycle from its thresholds (steady from
            # before its tile starts until its last capture), so the capture only chooses a
            # half (timing: the half's multiplexer, the subtract and its carry chain were one
            # path into ``raw_lim``, the 25F's critical path at some seeds).
            lims = [[Signal(signed(bw + 1), name=f"lim{h}_{col}", reset_less=True)
                     for col in range(C)] for h in range(2)]
            for h in range(2):
                for col in range(C):
                    m.d.sync += lims[h][col].eq(limit(self.thr[h][col], self.wpop[h][col],
                                                      f"{h}_{col}"))
        with m.If(capture):
            m.d.sync += [raw.eq(self.sums), raw_tile.eq(done), raw_full.eq(1)]
            for col in range(C):
                wpop = Mux(done.half, self.wpop[1][col], self.wpop[0][col])
                if self._stage:
                    lim = Mux(done.half, lims[1][col], lims[0][col])
                else:
                    lim = limit(Mux(done.half, self.thr[1][col], self.thr[0][col]), wpop,
                                str(col))
                m.d.sync += [raw_wpop[col].eq(wpop), raw_lim[col].eq(lim)]
            with m.If(done.last_tt):
                m.d.comb += self.held_clr.bit_select(done.half, 1).eq(1)
        # One subtract: ``base - acc * scale``, base K (XOR) or popcount(w) (AND).
        base = Signal(data.ArrayLayout(signed(bw), C))
        for col in range(C):
            m.d.comb += base[col].eq(Mux(xor, self.k, raw_wpop[col]))
        # With the shadow, the drain's last row (timing: no compare in the drain).
        sh_rlast = Signal(range(R), reset_less=True)
        # With ``result_stage``, the subtracts run every cycle into ``diff`` (no enable: the
        # shadow's load enable, which fans out to every element, was in front of them);
        # ``diff_ok``: ``raw`` did not change last cycle, so ``diff`` is its results.
        diff = Signal(data.ArrayLayout(data.ArrayLayout(signed(bw), C), R), reset_less=True)
        results, results_in = Signal.like(diff), Signal.like(diff)
        diff_ge = Signal(data.ArrayLayout(C, R), reset_less=True)
        ge, ge_in = Signal.like(diff_ge), Signal.like(diff_ge)
        for col in range(C):
            for r in range(R):
                acc = Signal(signed(bw), name=f"acc{r}_{col}")
                m.d.comb += acc.eq(raw[r][col])
                scaled = Signal(signed(bw), name=f"scaled{r}_{col}")
                m.d.comb += scaled.eq(Mux(xor, acc << 1, acc))
                m.d.comb += [results[r][col].eq(base[col] - scaled),
                             ge[r][col].eq(acc <= raw_lim[col])]
        # Columns beyond the tile's are 0 and rows and columns beyond it compare false from
        # ``diff`` on (timing: in front of the shadow, the compares ``cols > c`` sat between
        # its load decision and its registers' clears; 1024 lanes on the 25F).
        for r in range(R):
            for col in range(C):
                col_ok = raw_tile.cols > col
                m.d.comb += [results_in[r][col].eq(Mux(col_ok, results[r][col], 0)),
                             ge_in[r][col].eq((raw_tile.rows > r) & col_ok & ge[r][col])]
        diff_ok = Signal()
        if self._stage:
            m.d.sync += [diff.eq(results_in), diff_ge.eq(ge_in), diff_ok.eq(~capture)]
        else:
            m.d.comb += [diff.eq(results_in), diff_ge.eq(ge_in), diff_ok.eq(1)]
        with m.If(raw_full & diff_ok & ~shadow_full):
            m.d.sync += [sh.eq(raw_tile), shadow_full.eq(1),
                         sh_rlast.eq(raw_tile.rows - 1)]
            # (Columns beyond the tile's load as 0: no mask in the drain.)
            m.d.sync += [shadow.eq(diff), shadow_ge.eq(diff_ge)]
            with m.If(~capture):
                m.d.sync += raw_full.eq(0)
        m.d.comb += self.raw_full_next.eq(capture | (raw_full & ~(diff_ok & ~shadow_full)))

        # The drain. Integers: one beat per row. Bits: one beat per token tile, value >= thr.
        d_r = Signal(range(R))
        last_row = Signal()
        m.d.comb += last_row.eq(d_r == sh_rlast)
        out_free = ~self.result.valid | self.result.ready
        with m.If(self.result.ready):
            m.d.sync += self.result.valid.eq(0)
        with m.If(out_free & shadow_full & self.thr_en):
            m.d.sync += [self.result.valid.eq(1),
                         self.result.payload.last.eq(sh.last_nt & sh.last_tt),
                         shadow_full.eq(0)]
            m.d.sync += self.result.payload.bits.eq(shadow_ge.as_value())
        with m.Elif(out_free & shadow_full):
            m.d.sync += [self.result.valid.eq(1),
                         self.result.payload.last.eq(sh.last_nt & sh.last_tt & last_row)]
            for col in range(C):
                m.d.sync += self.result.payload.ints[col].eq(shadow[d_r][col])
            with m.If(last_row):
                m.d.sync += [d_r.eq(0), shadow_full.eq(0)]
            with m.Else():
                m.d.sync += d_r.eq(d_r + 1)
        with m.If(self.start):
            # Each result field loads only in its own mode (timing: no mode multiplexer in
            # front of the registers); the other stays at the 0 set here. (Last, so a plain
            # synchronous reset: ``start`` comes only while the drain is empty.)
            m.d.sync += [self.result.payload.ints.eq(0), self.result.payload.bits.eq(0)]
        return m
