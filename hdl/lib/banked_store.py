"""A store of ``banks`` block RAM banks side by side: one word a cycle in, one word or one whole
line of ``banks`` words a cycle out.

Word address ``a`` lives in bank ``a mod banks`` at row ``a div banks`` (``banks`` is a power of
two, so both are bit fields). Line ``l`` is words ``l * banks .. l * banks + banks - 1``. The
write port and the word read port behave like ``MemoryBank``'s (``rdata`` holds while ``ren`` is
low); the line read port (``lren``, ``laddr``, ``ldata``) shares the banks' read ports: the
caller never uses both read ports in one cycle (the line port wins).

With ``line_mode``, ``lmode`` replaces ``lren``: a level (a register in the caller) under which
the banks read ``laddr`` every cycle. The banks' address mux and read enables then see only that
register, not the caller's per-cycle issue (timing: the GEMV unit's credit ran into the weight
banks' address pins on the ULX3S-85F). ``ldata`` is ``laddr`` as it was ``latency`` cycles ago.

Both read ports have ``latency`` cycles: 1, the block RAMs' outputs, or 2, each bank's output
registered before the word mux and ``ldata`` (on ECP5 the blocks' own output registers,
``onebit.flow.ecp5_outreg``: their clock-to-out no longer starts a path through the mux).

No caller uses a word read in the cycle it writes it: the device's stores are written by LOAD
commands and read by products, never both at once. The banks are marked ``no_rw_check``
(``onebit.flow.no_rw_check``), so synthesis builds no bypass (a register of the written word,
an address compare and a mux) behind them, which would keep the output registers out of the
blocks and put the compare on the read's path.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count

__all__ = ["BankedStore"]


class BankedStore(wiring.Component):
    """Members
    -------
    waddr : In(range(depth));  wdata : In(width);  wen : In(1)
    raddr : In(range(depth));  ren : In(1);  rdata : Out(width)
    laddr : In(range(lines));  lren : In(1) (``lmode`` with ``line_mode``);
    ldata : Out(width * banks)
    """

    def __init__(self, *, width: int, depth: int, banks: int, latency: int = 1,
                 line_mode: bool = False):
        for name, v in (("Store width", width), ("Store depth", depth), ("Bank count", banks)):
            check_count(name, v)
        if banks & (banks - 1):
            raise ValueError(f"Bank count must be a power of two, not {banks}")
        if latency not in (1, 2):
            raise ValueError(f"Store read latency must be 1 or 2, not {latency!r}")
        if not isinstance(line_mode, bool):
            raise TypeError(f"line_mode must be a bool, not {line_mode!r}")
        self._latency, self._line_mode = latency, line_mode
        self._width, self._depth, self._banks = width, depth, banks
        self._rows = -(-depth // banks)
        super().__init__({
            "waddr": In(range(depth)), "wdata": In(width), "wen": In(1),
            "raddr": In(range(depth)), "ren": In(1), "rdata": Out(width),
            "laddr": In(range(self._rows)), "lmode" if line_mode else "lren": In(1),
            "ldata": Out(width * banks),
        })

    @property
    def lines(self) -> int:
        return self._rows

    def elaborate(self, platform):
        m = Module()
        w, b = self._width, self._banks
        bits = b.bit_length() - 1
        line = self.lmode if self._line_mode else self.lren
        sel = Signal(range(b))
        with m.If(self.ren & ~line):
            m.d.sync += sel.eq(self.raddr[:bits] if bits else 0)
        if self._latency == 2:
            sel_d = Signal.like(sel)
            m.d.sync += sel_d.eq(sel)
            sel = sel_d
        outs = []
        for i in range(b):
            mem = memory.Memory(shape=w, depth=self._rows, init=[],
                                attrs={"no_rw_check": 1})
            m.submodules[f"bank{i}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            low = self.waddr[:bits] if bits else 0
            m.d.comb += [wr.addr.eq(self.waddr >> bits), wr.data.eq(self.wdata),
                         wr.en.eq(self.wen & (low == i)),
                         rd.addr.eq(Mux(line, self.laddr, self.raddr >> bits)),
                         rd.en.eq(self.ren | line)]
            data = rd.data
            if self._latency == 2:
                # No reset: the block RAM's own output register (onebit.flow.ecp5_outreg).
                data = Signal(w, name=f"out{i}", reset_less=True)
                m.d.sync += data.eq(rd.data)
            m.d.comb += self.ldata[i * w:(i + 1) * w].eq(data)
            outs.append(data)
        m.d.comb += self.rdata.eq(Array(outs)[sel] if b > 1 else outs[0])
        return m
