"""A store whose two read ports each read two consecutive words a cycle.

Contract: a write of ``wdata`` to ``waddr`` when ``wen``; a read of ``raddr<i>`` when ``ren<i>``
shows words ``raddr<i>`` (low half) and ``raddr<i> + 1`` (high half; undefined past the last
word) on ``rdata<i>`` the next cycle, and holds while ``ren<i>`` is low (read latency 1). Reads and
writes never overlap (``TwoReadStore``'s contract; port 0's data after a write is undefined).

The words alternate between two ``TwoReadStore`` banks, even words in one and odd in the
other, so two consecutive words are always one word of each bank: a port reads index
``(a + 1) >> 1`` of the even bank and ``a >> 1`` of the odd one and swaps the halves for an odd
``a`` (a registered parity bit selects, after the block RAMs' outputs). The banks hold the
words once between them, as one ``TwoReadStore`` would.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from .two_read_store import TwoReadStore

__all__ = ["PairReadStore"]


class PairReadStore(wiring.Component):
    """``depth`` words of ``width`` bits.

    Members
    -------
    waddr : In(range(depth));  wdata : In(width);  wen : In(1)
    raddr0, raddr1 : In(range(depth));  ren0, ren1 : In(1);  rdata0, rdata1 : Out(2 * width)
    """

    def __init__(self, *, width: int, depth: int):
        check_count("Store width", width)
        check_count("Store depth", depth)
        self._width, self._depth = width, depth
        ports = {"waddr": In(range(depth)), "wdata": In(width), "wen": In(1)}
        for i in range(2):
            ports.update({f"raddr{i}": In(range(depth)), f"ren{i}": In(1),
                          f"rdata{i}": Out(2 * width)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        half = -(-self._depth // 2)
        banks = []
        for parity in range(2):
            bank = TwoReadStore(width=self._width, depth=half)
            m.submodules[f"bank{parity}"] = bank
            banks.append(bank)
            m.d.comb += [bank.waddr.eq(self.waddr >> 1), bank.wdata.eq(self.wdata),
                         bank.wen.eq(self.wen & (self.waddr[0] == parity))]
        even, odd = banks
        for i in range(2):
            addr, en = getattr(self, f"raddr{i}"), getattr(self, f"ren{i}")
            up = Signal(range(half + 1), name=f"up{i}")
            m.d.comb += up.eq((addr + 1) >> 1)
            odd_addr = Signal(name=f"odd{i}")
            with m.If(en):
                m.d.sync += odd_addr.eq(addr[0])
            # (Past the last word the even bank reads index 0; free where ``half`` is a
            # power of two, which the address's width wraps.)
            wrapped = up if half & (half - 1) == 0 else Mux(up == half, 0, up)
            m.d.comb += [getattr(even, f"raddr{i}").eq(wrapped),
                         getattr(odd, f"raddr{i}").eq(addr >> 1),
                         getattr(even, f"ren{i}").eq(en), getattr(odd, f"ren{i}").eq(en)]
            de, do = getattr(even, f"rdata{i}"), getattr(odd, f"rdata{i}")
            m.d.comb += getattr(self, f"rdata{i}").eq(
                Mux(odd_addr, Cat(do, de), Cat(de, do)))
        return m
