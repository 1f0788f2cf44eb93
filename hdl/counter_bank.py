"""A bank of event counters kept in one block RAM instead of a register and an adder each.

Each counter ``i`` counts the cycles its ``inc[i]`` is high (modulo ``2 ** width``); ``clear``
sets them all to zero (an increment in the same cycle is dropped). A small pending count per
counter collects increments; one counter a cycle, in turn, has its pending count added to its
word in the RAM (read one cycle, written back the next: one shared adder). A read (``ren``) takes
the RAM's read port for a cycle instead of a write-back. Reads are exact: ``raddr`` with ``ren``
in cycle ``t`` gives on ``rdata`` in cycle ``t + 3`` the count of every increment up to and
including cycle ``t`` (the RAM word, plus the pending count, plus a write-back in flight).
``ren`` must not be high in two consecutive cycles (the pending counts are sized for that).

Every input is registered, and the read is two register stages (the parts, then one adder), so
no path from the bank's user reaches deep into it (timing).

Cost: ``n`` pending counts of ``bits(2n)`` bits and two adders, instead of ``n * width``
flip-flops, ``n`` adders and a ``width``-bit ``n``-way read mux.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CounterBank"]


class CounterBank(wiring.Component):
    """``count`` counters of ``width`` bits.

    Members
    -------
    inc : In(count)
        One increment per counter per cycle.
    clear : In(1)
        All counters to zero.
    raddr : In(range(count));  ren : In(1);  rdata : Out(width)
        Read latency 3; ``ren`` never two cycles in a row.
    """

    def __init__(self, *, count: int, width: int = 32):
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise ValueError(f"Counter count must be an integer of at least 2, not {count!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ValueError(f"Counter width must be a positive integer, not {width!r}")
        self._count, self._width = count, width
        super().__init__({
            "inc": In(count), "clear": In(1),
            "raddr": In(range(count)), "ren": In(1), "rdata": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self._count, self._width
        # Few words: Yosys would build them from flip-flops unless told to use a block RAM.
        m.submodules.mem = mem = memory.Memory(shape=w, depth=n, init=[],
                                               attrs={"ram_style": "block"})
        wr, rd = mem.write_port(), mem.read_port()
        inc, clear, ren, raddr = Signal(n), Signal(), Signal(), Signal(range(n))
        m.d.sync += [inc.eq(self.inc), clear.eq(self.clear), ren.eq(self.ren),
                     raddr.eq(self.raddr)]

        # Reads delay write-backs: a counter waits at most 2n cycles for its turn.
        pend = Array(Signal(range(2 * n + 1), name=f"pend{i}") for i in range(n))
        fresh = Signal(n, init=(1 << n) - 1)   # cleared since its last write-back: RAM is stale
        sel = Signal(range(n))
        # Write-back stage (b): the counter read last cycle, its pending count and staleness.
        b_valid, b_sel, b_add, b_fresh = Signal(), Signal(range(n)), Signal.like(pend[0]), Signal()

        m.d.comb += [rd.addr.eq(Mux(ren, raddr, sel)), rd.en.eq(1),
                     wr.addr.eq(b_sel), wr.en.eq(b_valid),
                     wr.data.eq(Mux(b_fresh, 0, rd.data) + b_add)]
        m.d.sync += b_valid.eq(~ren)
        with m.If(~ren):
            m.d.sync += [sel.eq(Mux(sel == n - 1, 0, sel + 1)), b_sel.eq(sel),
                         b_add.eq(pend[sel]), b_fresh.eq(fresh.bit_select(sel, 1))]
        with m.If(clear):
            m.d.sync += [p.eq(0) for p in pend]
            m.d.sync += [fresh.eq((1 << n) - 1), b_valid.eq(0)]
        with m.Else():
            for i in range(n):
                with m.If(~ren & (sel == i)):
                    m.d.sync += [pend[i].eq(inc[i]), fresh[i].eq(0)]
                with m.Else():
                    m.d.sync += pend[i].eq(pend[i] + inc[i])

        # Read, stage c (the cycle after the RAM read): the RAM word is from before the
        # write-back of the read's cycle, so that write-back (if it is this counter's and no
        # clear came) is added here, with the pending count, which now includes the read cycle's
        # increment (a read cycle writes nothing back). Stage d: one adder.
        c_addr, c_valid, c_sel, c_add, c_fresh = (Signal(range(n)), Signal(), Signal(range(n)),
                                                  Signal.like(pend[0]), Signal())
        m.d.sync += [c_addr.eq(raddr), c_valid.eq(b_valid & ~clear), c_sel.eq(b_sel),
                     c_add.eq(b_add), c_fresh.eq(b_fresh)]
        in_flight = c_valid & (c_sel == c_addr)
        d_data, d_small = Signal(w), Signal(range(4 * n + 1))
        m.d.sync += [d_data.eq(Mux(Mux(in_flight, c_fresh, fresh.bit_select(c_addr, 1)), 0,
                                   rd.data)),
                     d_small.eq(pend[c_addr] + Mux(in_flight, c_add, 0))]
        m.d.comb += self.rdata.eq(d_data + d_small)
        return m
