"""A bank of event counters kept in one block RAM instead of a register and an adder each.

Each counter ``i`` counts the cycles its ``inc[i]`` is high (modulo ``2 ** width``); ``clear``
sets them all to zero (an increment in the same cycle is dropped). A small pending count per
counter collects increments; one counter a cycle, in turn, has its pending count added to its
word in the RAM (read one cycle, registered, written back the next: one shared adder). A read
(``ren``) takes the RAM's read port for a cycle instead of a write-back. Reads are exact:
``raddr`` with ``ren`` in cycle ``t`` gives on ``rdata`` in cycle ``t + 5`` the count of every
increment up to and including cycle ``t`` (the RAM word, plus the pending count, plus the
write-backs in flight). ``ren`` must not be high in two consecutive cycles (the pending counts
are sized for that).

Every input is registered, and the read is four register stages (the parts, their small sum,
the word beside that sum, then the two added), so no path from the bank's user reaches deep into
it (timing).

Cost: ``n`` pending counts of ``bits(2n)`` bits and two adders, instead of ``n * width``
flip-flops, ``n`` adders and a ``width``-bit ``n``-way read mux.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from .family import family

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
        Read latency 5; ``ren`` never two cycles in a row.
    """

    #: Cycles from ``ren`` to ``rdata``.
    LATENCY = 5

    def __init__(self, *, count: int, width: int = 32):
        # (Three or more: a counter's next write-back reads its word after the last one wrote.)
        if isinstance(count, bool) or not isinstance(count, int) or count < 3:
            raise ValueError(f"Counter count must be an integer of at least 3, not {count!r}")
        check_count("Counter width", width)
        self._count, self._width = count, width
        super().__init__({
            "inc": In(count), "clear": In(1),
            "raddr": In(range(count)), "ren": In(1), "rdata": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self._count, self._width
        # Few words: Yosys would build them from flip-flops unless told to use a RAM: on ECP5
        # the fabric's distributed RAM (its read is asynchronous, so the word registered
        # behind it costs no block RAM clock-to-out), elsewhere a block RAM.
        style = "distributed" if family(platform) == "ecp5" else "block"
        m.submodules.mem = mem = memory.Memory(shape=w, depth=n, init=[],
                                               attrs={"ram_style": style})
        wr, rd = mem.write_port(), mem.read_port()
        inc, clear, ren, raddr = Signal(n), Signal(), Signal(), Signal(range(n))
        m.d.sync += [inc.eq(self.inc), clear.eq(self.clear), ren.eq(self.ren),
                     raddr.eq(self.raddr)]

        # Reads delay write-backs: a counter waits at most 2n cycles for its turn.
        pend = Array(Signal(range(2 * n + 1), name=f"pend{i}") for i in range(n))
        fresh = Signal(n, init=(1 << n) - 1)   # cleared since its last write-back: RAM is stale
        sel = Signal(range(n))
        # Write-back: stage a reads the counter's word, stage b (the counter read last cycle,
        # its pending count and staleness) registers the word (timing: a block RAM's output is
        # slow), stage x adds and writes it back.
        b_valid, b_sel, b_add, b_fresh = Signal(), Signal(range(n)), Signal.like(pend[0]), Signal()
        x_valid, x_sel, x_add, x_fresh = Signal(), Signal(range(n)), Signal.like(pend[0]), Signal()
        x_data = Signal(w)

        m.d.comb += [rd.addr.eq(Mux(ren, raddr, sel)), rd.en.eq(1),
                     wr.addr.eq(x_sel), wr.en.eq(x_valid),
                     wr.data.eq(Mux(x_fresh, 0, x_data) + x_add)]
        m.d.sync += [b_valid.eq(~ren), x_valid.eq(b_valid), x_sel.eq(b_sel), x_add.eq(b_add),
                     x_fresh.eq(b_fresh), x_data.eq(rd.data)]
        with m.If(~ren):
            m.d.sync += [sel.eq(Mux(sel == n - 1, 0, sel + 1)), b_sel.eq(sel),
                         b_add.eq(pend[sel]), b_fresh.eq(fresh.bit_select(sel, 1))]
        with m.If(clear):
            m.d.sync += [p.eq(0) for p in pend]
            m.d.sync += [fresh.eq((1 << n) - 1), b_valid.eq(0), x_valid.eq(0)]
        with m.Else():
            for i in range(n):
                with m.If(~ren & (sel == i)):
                    m.d.sync += [pend[i].eq(inc[i]), fresh[i].eq(0)]
                with m.Else():
                    m.d.sync += pend[i].eq(pend[i] + inc[i])

        # Read, stage c (the cycle after the RAM read): the RAM word is from before the
        # write-backs in stages b and x of the read's cycle, so those (if one is this counter's
        # and no clear came) are added, with the pending count, which now includes the read
        # cycle's increment (a read cycle writes nothing back). Whether the write-backs are
        # this counter's, and whether its RAM word is stale, are decided in the read cycle
        # (in a read cycle nothing is written back, so only a clear changes ``fresh`` before
        # stage c); stage c registers the parts, stage d their small sum, and the output
        # register adds that to the word: every step starts and ends in a register (timing).
        c_addr = Signal(range(n))
        c_bhit, c_xhit = Signal(), Signal()
        c_badd, c_xadd = Signal.like(b_add), Signal.like(x_add)
        stale = Signal()
        b_hit = b_valid & ~clear & (b_sel == raddr)
        x_hit = x_valid & ~clear & (x_sel == raddr)
        m.d.sync += [c_addr.eq(raddr), c_badd.eq(b_add), c_xadd.eq(x_add),
                     c_bhit.eq(b_hit), c_xhit.eq(x_hit),
                     stale.eq(Mux(b_hit, b_fresh, Mux(x_hit, x_fresh,
                                                      clear | fresh.bit_select(raddr, 1))))]
        d_data, d_pend = Signal(w), Signal.like(pend[0])
        d_bx = Signal(range(4 * n + 1))
        m.d.sync += [d_data.eq(Mux(stale, 0, rd.data)), d_pend.eq(pend[c_addr]),
                     d_bx.eq(Mux(c_bhit, c_badd, 0) + Mux(c_xhit, c_xadd, 0))]
        e_data, e_small = Signal(w), Signal(range(6 * n + 1))
        m.d.sync += [e_data.eq(d_data), e_small.eq(d_pend + d_bx)]
        # (The sum registered too: a reader's multiplexer followed the 32-bit adder.)
        m.d.sync += self.rdata.eq(e_data + e_small)
        return m
