"""The GEMM core's activation buffer and its loader: token rows in, one chunk a cycle.

Row ``t`` goes to bank ``t mod R`` at address ``(t div R) * kw + chunk`` (``kw = ceil(K / L)``
chunks a row). A row's last chunk is masked with ``last_mask`` as it is written (padding bits
0), so the array takes the words as they are read. ``start`` (one cycle) empties the buffer's
count and begins taking ``T`` rows from ``act`` (``t_m1 = T - 1``). ``tokens`` counts the rows
in; ``loaded_all`` is high once all ``T`` are. The issue stage reads every bank at ``rd_addr``
(``rd_en``; read latency 1) into ``rd_data``, one word a row.

The command's shape (``kw``, ``kw_one``: ``K <= L``, ``kw_m2``: ``kw - 2``, ``last_mask``,
``t_m1``) comes from the core's registers and holds while the command runs.

With ``config.max_bits > 1`` a row is ``A`` bit-planes of ``kw`` chunks each (``planes_m1 =
A - 1``, ``row_chunks = A * kw``), top plane first: row ``t`` starts at ``(t div R) *
row_chunks``, and each plane's last chunk is masked.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CoreConfig

__all__ = ["ActivationBuffer"]


class ActivationBuffer(wiring.Component):
    """Members
    -------
    act : In(stream.Signature(lanes))
    start : In(1)
    kw : In(range(max_chunks + 1));  kw_one : In(1);  kw_m2 : In(range(max_chunks + 1))
    last_mask : In(lanes);  t_m1 : In(range(max_t + 1))
    rd_addr : In(range(act_depth));  rd_en : In(1);  rd_data : Out(ArrayLayout(lanes, rows))
    tokens : Out(range(max_t + 1));  loaded_all : Out(1)
    planes_m1 : In(range(4));  row_chunks : In(range(max_chunks + 1))  (``max_bits > 1`` only)
    """

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self._cfg = c = config
        ports = {
            "act": In(stream.Signature(c.lanes)), "start": In(1),
            "kw": In(range(c.max_chunks + 1)), "kw_one": In(1),
            "kw_m2": In(range(c.max_chunks + 1)), "last_mask": In(c.lanes),
            "t_m1": In(range(c.max_t + 1)),
            "rd_addr": In(range(c.act_depth)), "rd_en": In(1),
            "rd_data": Out(data.ArrayLayout(c.lanes, c.rows)),
            "tokens": Out(range(c.max_t + 1)), "loaded_all": Out(1),
        }
        if c.max_bits > 1:
            ports.update({"planes_m1": In(range(4)), "row_chunks": In(range(c.max_chunks + 1))})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, L, KWM = cfg.rows, cfg.lanes, cfg.max_chunks
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
            m.d.comb += [act_rd[r].addr.eq(self.rd_addr), act_rd[r].en.eq(self.rd_en),
                         self.rd_data[r].eq(act_rd[r].data)]

        planes = cfg.max_bits > 1
        a_j = Signal(range(KWM))
        a_jlast = Signal()      # a_j is the plane's last chunk (a register, not a_j == kw - 1)
        a_r = Signal(range(R))
        # ``a_r == R - 1`` as a register (timing: the compare was in the path from the
        # loader's state to ``a_base``; 1024 lanes on the 25F).
        a_rlast = Signal(init=R == 1)
        a_base = Signal(range(cfg.act_depth + KWM + 1))
        a_tok, loaded_all = self.tokens, self.loaded_all
        # With planes: the chunk's offset in its row, the planes after this one, and whether
        # this is the row's last plane (a register). Without, the offset is ``a_j`` and every
        # plane is the last.
        a_ptr, a_p, a_plast = a_j, None, 1
        row_chunks = self.kw
        if planes:
            a_ptr, a_p, a_plast = Signal(range(KWM)), Signal(range(4)), Signal()
            row_chunks = self.row_chunks
        with m.If(self.start):
            m.d.sync += [a_j.eq(0), a_r.eq(0), a_rlast.eq(R == 1), a_base.eq(0), a_tok.eq(0),
                         loaded_all.eq(0), a_jlast.eq(self.kw_one)]
            if planes:
                m.d.sync += [a_ptr.eq(0), a_p.eq(self.planes_m1),
                             a_plast.eq(self.planes_m1 == 0)]
        for r in range(R):
            m.d.comb += [act_wr[r].addr.eq(a_base + a_ptr),
                         act_wr[r].data.eq(self.act.payload &
                                           Mux(a_jlast, self.last_mask, (1 << L) - 1))]
        with m.FSM(name="act_loader"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.act.ready.eq(1)
                for r in range(R):
                    m.d.comb += act_wr[r].en.eq(self.act.valid & (a_r == r))
                with m.If(self.act.valid):
                    with m.If(a_jlast & a_plast):
                        m.d.sync += [a_j.eq(0), a_jlast.eq(self.kw_one), a_tok.eq(a_tok + 1)]
                        if planes:
                            m.d.sync += [a_ptr.eq(0), a_p.eq(self.planes_m1),
                                         a_plast.eq(self.planes_m1 == 0)]
                        with m.If(a_rlast):
                            m.d.sync += [a_r.eq(0), a_rlast.eq(R == 1),
                                         a_base.eq(a_base + row_chunks)]
                        with m.Else():
                            m.d.sync += [a_r.eq(a_r + 1), a_rlast.eq(a_r == R - 2)]
                        with m.If(a_tok == self.t_m1):
                            m.d.sync += loaded_all.eq(1)
                            m.next = "IDLE"
                    if planes:
                        with m.Elif(a_jlast):
                            # (The next plane of the same row.)
                            m.d.sync += [a_j.eq(0), a_jlast.eq(self.kw_one), a_ptr.eq(a_ptr + 1),
                                         a_p.eq(a_p - 1), a_plast.eq(a_p == 1)]
                    with m.Else():
                        m.d.sync += [a_j.eq(a_j + 1), a_jlast.eq(a_j == self.kw_m2)]
                        if planes:
                            m.d.sync += a_ptr.eq(a_ptr + 1)
        return m
