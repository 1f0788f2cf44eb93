"""A store whose two read ports each read a run of ``words`` consecutive words a cycle.

Contract: a write of ``wdata`` to ``waddr`` when ``wen``; a read of ``raddr<i>`` when ``ren<i>``
shows, the next cycle, the run of ``words`` words that holds word ``a = raddr<i>`` on
``rdata<i>`` (word ``j`` in bits ``j * width`` on), rotated so that word ``a`` comes first:
word ``j`` is word ``a - a mod words + (a + j) mod words``. So a read at a multiple of
``words`` shows words ``a`` to ``a + words - 1``, and any read shows word ``a`` in its low
``width`` bits. The data holds while ``ren<i>`` is low (read latency 1). Reads and writes never
overlap (``TwoReadStore``'s contract; port 0's data after a write is undefined).

The words go round ``words`` (a power of two) ``TwoReadStore`` banks, word ``a`` in bank
``a mod words`` at index ``a // words``: a port reads every bank at ``raddr // words`` (no
adder between the address and the block RAMs) and rotates the banks' words by ``a mod words``
(a register of those bits selects, after the block RAMs' outputs). The banks hold the words
once between them, as one ``TwoReadStore`` would; with ``words = 1`` this is a
``TwoReadStore``.
"""

from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from .two_read_store import TwoReadStore

__all__ = ["RunReadStore"]


class RunReadStore(wiring.Component):
    """``depth`` words of ``width`` bits, read ``words`` at a time.

    Members
    -------
    waddr : In(range(depth));  wdata : In(width);  wen : In(1)
    raddr0, raddr1 : In(range(depth));  ren0, ren1 : In(1);  rdata0, rdata1 : Out(words * width)
    """

    def __init__(self, *, width: int, depth: int, words: int):
        check_count("Store width", width)
        check_count("Store depth", depth)
        if isinstance(words, bool) or not isinstance(words, int) or words < 1 or \
                words & (words - 1):
            raise ValueError(f"Words a read must be a power of two, not {words!r}")
        self._width, self._depth, self._words = width, depth, words
        ports = {"waddr": In(range(depth)), "wdata": In(width), "wen": In(1)}
        for i in range(2):
            ports.update({f"raddr{i}": In(range(depth)), f"ren{i}": In(1),
                          f"rdata{i}": Out(words * width)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n, w = self._words, self._width
        shift = n.bit_length() - 1
        bank_depth = -(-self._depth // n)
        banks = []
        for b in range(n):
            bank = TwoReadStore(width=w, depth=bank_depth)
            m.submodules[f"bank{b}"] = bank
            banks.append(bank)
            m.d.comb += [bank.waddr.eq(self.waddr >> shift), bank.wdata.eq(self.wdata),
                         bank.wen.eq(self.wen & (self.waddr[:shift] == b) if n > 1 else
                                     self.wen)]
        for i in range(2):
            addr, en = getattr(self, f"raddr{i}"), getattr(self, f"ren{i}")
            rot = Signal(range(n), name=f"rot{i}")
            with m.If(en):
                m.d.sync += rot.eq(addr[:shift] if n > 1 else 0)
            for bank in banks:
                m.d.comb += [getattr(bank, f"raddr{i}").eq(addr >> shift),
                             getattr(bank, f"ren{i}").eq(en)]
            data = Array(getattr(bank, f"rdata{i}") for bank in banks)
            m.d.comb += getattr(self, f"rdata{i}").eq(
                Cat(data[(rot + j) & (n - 1)] if n > 1 else data[0] for j in range(n)))
        return m
