"""A store of ``banks`` block RAM banks side by side: one word a cycle in, one word or one whole
line of ``banks`` words a cycle out.

Word address ``a`` lives in bank ``a mod banks`` at row ``a div banks`` (``banks`` is a power of
two, so both are bit fields). Line ``l`` is words ``l * banks .. l * banks + banks - 1``. The
write port and the word read port behave like ``MemoryBank``'s (read latency 1, ``rdata`` holds
while ``ren`` is low); the line read port (``lren``, ``laddr``, ``ldata``, latency 1) shares the
banks' read ports: the caller never uses both read ports in one cycle (the line port wins).
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
    laddr : In(range(lines));  lren : In(1);  ldata : Out(width * banks)
    """

    def __init__(self, *, width: int, depth: int, banks: int):
        for name, v in (("Store width", width), ("Store depth", depth), ("Bank count", banks)):
            check_count(name, v)
        if banks & (banks - 1):
            raise ValueError(f"Bank count must be a power of two, not {banks}")
        self._width, self._depth, self._banks = width, depth, banks
        self._rows = -(-depth // banks)
        super().__init__({
            "waddr": In(range(depth)), "wdata": In(width), "wen": In(1),
            "raddr": In(range(depth)), "ren": In(1), "rdata": Out(width),
            "laddr": In(range(self._rows)), "lren": In(1), "ldata": Out(width * banks),
        })

    @property
    def lines(self) -> int:
        return self._rows

    def elaborate(self, platform):
        m = Module()
        w, b = self._width, self._banks
        bits = b.bit_length() - 1
        sel = Signal(range(b))
        with m.If(self.ren & ~self.lren):
            m.d.sync += sel.eq(self.raddr[:bits] if bits else 0)
        outs = []
        for i in range(b):
            mem = memory.Memory(shape=w, depth=self._rows, init=[])
            m.submodules[f"bank{i}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            low = self.waddr[:bits] if bits else 0
            m.d.comb += [wr.addr.eq(self.waddr >> bits), wr.data.eq(self.wdata),
                         wr.en.eq(self.wen & (low == i)),
                         rd.addr.eq(Mux(self.lren, self.laddr, self.raddr >> bits)),
                         rd.en.eq(self.ren | self.lren),
                         self.ldata[i * w:(i + 1) * w].eq(rd.data)]
            outs.append(rd.data)
        m.d.comb += self.rdata.eq(Array(outs)[sel] if b > 1 else outs[0])
        return m
