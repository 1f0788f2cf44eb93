"""The device side of the host link: bytes in, commands executed, framed responses out.

``DeviceLink`` joins ``FrameReceiver`` -> ``CommandProcessor`` -> ``FrameSender`` over byte
streams (a UART on a board, a plain byte stream in simulation), with the stores the commands
fill (activations, weights, thresholds: ``MemoryBank``; results) and the ``GemmRunner`` that
runs the GEMM core out of them. Every complete frame gets exactly one response frame; a frame
whose header check fails gets none (its length cannot be trusted). The commands and their
payloads are ``onebit.host.protocol``'s; ``docs/host-link.md`` tabulates them.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..host.device_config import DeviceConfig
from .command import CommandProcessor
from .frame_rx import FrameReceiver
from .frame_tx import FrameSender
from .gemm_runner import GemmRunner
from .membank import MemoryBank

__all__ = ["DeviceLink"]


class DeviceLink(wiring.Component):
    """The whole device behind a byte stream.

    Parameters
    ----------
    dev : DeviceConfig
    timeout : int
        Cycles without a byte after which a frame in progress is abandoned (answered
        ``TIMED_OUT``).

    Members
    -------
    i : In(stream.Signature(8))
    o : Out(stream.Signature(8))
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, dev: DeviceConfig, *, timeout: int = 1 << 16):
        if not isinstance(dev, DeviceConfig):
            raise TypeError(f"dev must be a DeviceConfig, not {dev!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"Timeout must be an integer of at least 2 cycles, not {timeout!r}")
        self._dev, self._timeout = dev, timeout
        super().__init__()

    @property
    def config(self) -> DeviceConfig:
        return self._dev

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        m.submodules.rx = rx = FrameReceiver(timeout=self._timeout)
        m.submodules.proc = proc = CommandProcessor(dev)
        m.submodules.tx = tx = FrameSender()
        m.submodules.runner = run = GemmRunner(dev)
        wiring.connect(m, wiring.flipped(self.i), rx.i)
        wiring.connect(m, rx.o, proc.events)
        wiring.connect(m, proc.header, tx.header)
        wiring.connect(m, proc.data, tx.data)
        wiring.connect(m, tx.o, wiring.flipped(self.o))
        m.d.comb += [proc.bad_header.eq(rx.bad_header),
                     proc.tx_stall.eq(tx.o.valid & ~tx.o.ready)]

        stores = {
            "act": MemoryBank(width=c.lanes, depth=dev.act_words),
            "weight": MemoryBank(width=c.lanes, depth=dev.weight_words, kind=dev.weight_store),
            "thresh": MemoryBank(width=c.threshold_width, depth=dev.thresh_words),
        }
        for name, bank in stores.items():
            m.submodules[f"{name}_store"] = bank
            m.d.comb += [bank.waddr.eq(proc.st_waddr), bank.wdata.eq(proc.st_wdata),
                         bank.wen.eq(getattr(proc, f"{name}_wen")),
                         bank.raddr.eq(getattr(run, f"{name}_raddr")),
                         bank.ren.eq(getattr(run, f"{name}_ren")),
                         getattr(run, f"{name}_rdata").eq(bank.rdata)]
        m.submodules.result_store = res = MemoryBank(width=dev.result_word_bits,
                                                     depth=dev.result_beats)
        m.d.comb += [res.waddr.eq(run.res_waddr), res.wdata.eq(run.res_wdata),
                     res.wen.eq(run.res_wen), res.raddr.eq(proc.res_raddr),
                     res.ren.eq(proc.res_ren), proc.res_rdata.eq(res.rdata)]

        m.d.comb += [run.start.eq(proc.run_start), run.params.eq(proc.run_params),
                     proc.run_done.eq(run.done), proc.run_error.eq(run.error),
                     proc.run_beats.eq(run.beats), proc.core_counters.eq(run.counters)]
        return m
