"""A block-RAM store with one write port and two read ports that costs one copy of its words.

Contract: a write of ``wdata`` to ``waddr`` when ``wen``; a read of ``raddr<i>`` when ``ren<i>``
shows on ``rdata<i>`` the next cycle and holds while ``ren<i>`` is low (read latency 1).
Reads and writes never overlap: the caller does not read in a cycle it writes, and port 0 reads
the write's address while ``wen`` is high (its ``rdata0`` after such a cycle is undefined).

Why: a memory with a write port and two read ports maps onto true dual-port block RAM (ECP5
DP16KD, two ports each able to read or write) only if the write shares a port with a read,
and Yosys shares them only when both ports see the same address signal. Otherwise it builds a
copy of the memory per read port. So port 0's address is ``waddr`` while ``wen``, else
``raddr0``; the memory is marked ``no_rw_check`` (``onebit.flow.no_rw_check``), so no
collision bypass is built behind it either. The iCE40's EBR has one read and one write port:
there Yosys still builds two copies.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count

__all__ = ["TwoReadStore"]


class TwoReadStore(wiring.Component):
    """``depth`` words of ``width`` bits.

    Members
    -------
    waddr : In(range(depth));  wdata : In(width);  wen : In(1)
    raddr0, raddr1 : In(range(depth));  ren0, ren1 : In(1);  rdata0, rdata1 : Out(width)
    """

    def __init__(self, *, width: int, depth: int):
        check_count("Store width", width)
        check_count("Store depth", depth)
        self._width, self._depth = width, depth
        ports = {"waddr": In(range(depth)), "wdata": In(width), "wen": In(1)}
        for i in range(2):
            ports.update({f"raddr{i}": In(range(depth)), f"ren{i}": In(1),
                          f"rdata{i}": Out(width)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth, init=[],
                                               attrs={"no_rw_check": 1})
        addr0 = Signal(range(self._depth))
        m.d.comb += addr0.eq(Mux(self.wen, self.waddr, self.raddr0))
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(addr0), wp.data.eq(self.wdata), wp.en.eq(self.wen)]
        for i, addr in enumerate((addr0, self.raddr1)):
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(addr), rp.en.eq(getattr(self, f"ren{i}")),
                         getattr(self, f"rdata{i}").eq(rp.data)]
        return m
