"""The device side of the host link: bytes in, commands executed, framed responses out.

``DeviceLink`` joins ``FrameReceiver`` -> ``CommandProcessor`` -> ``FrameSender`` over byte
streams (a UART on a board, a plain byte stream in simulation; register slices between the
blocks), with the ``Datapath``: the
stores the commands fill, the ``GemmRunner`` that runs the GEMM core out of them and, when the
device has one, the layer engine. Every complete frame gets exactly one response frame; a frame
whose header check fails gets none (its length cannot be trusted). The commands and their
payloads are ``onebit.host.protocol``'s; ``docs/host-link.md`` tabulates them.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import DeviceConfig
from ...host.layer_layout import EngineStep
from ..lib.register_slice import RegisterSlice
from .command import CommandProcessor
from .datapath import Datapath, DatapathPort, datapath_signature
from .frame_rx import FrameReceiver
from .frame_tx import FrameSender

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
    layer_step : Out(EngineStep)
        With a layer engine: what it does this cycle (for profiling in simulation; a board's
        top leaves it unconnected, so it costs no logic there).
    """

    def __init__(self, dev: DeviceConfig, *, timeout: int = 1 << 16):
        check_device(dev)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"Timeout must be an integer of at least 2 cycles, not {timeout!r}")
        self._dev, self._timeout = dev, timeout
        ports = {"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))}
        if dev.layer is not None:
            ports["layer_step"] = Out(EngineStep)
        super().__init__(ports)

    @property
    def config(self) -> DeviceConfig:
        return self._dev

    def elaborate(self, platform):
        m = Module()
        dev = self._dev
        m.submodules.rx = rx = FrameReceiver(timeout=self._timeout)
        m.submodules.proc = proc = CommandProcessor(dev)
        m.submodules.tx = tx = FrameSender()
        m.submodules.datapath = dp = Datapath(dev)
        # Register slices (timing) between the processor's answer bytes and the sender, and
        # after the sender: no path runs from one block's state through another's handshake
        # into a third's registers. (The receiver needs none: its output waits until empty, so
        # the processor's ``events.ready``, a register, reaches only its ``o.valid``.)
        m.submodules.data_slice = data_slice = RegisterSlice(8)
        m.submodules.out_slice = out_slice = RegisterSlice(8)
        wiring.connect(m, wiring.flipped(self.i), rx.i)
        wiring.connect(m, rx.o, proc.events)
        wiring.connect(m, proc.header, tx.header)
        wiring.connect(m, proc.data, data_slice.i)
        wiring.connect(m, data_slice.o, tx.data)
        wiring.connect(m, tx.o, out_slice.i)
        wiring.connect(m, out_slice.o, wiring.flipped(self.o))
        m.d.comb += [proc.bad_header.eq(rx.bad_header),
                     proc.tx_stall.eq(self.o.valid & ~self.o.ready)]
        # The processor drives the datapath's inputs and reads its outputs.
        flipped = datapath_signature(self._dev).flip()
        wiring.connect(m, DatapathPort(proc, flipped), DatapathPort(dp, flipped.flip()))
        if dev.layer is not None:
            m.d.comb += self.layer_step.eq(dp.layer_step)
        return m
