"""The device side of the host link: frames in, command dispatch, framed responses out.

``DeviceLink`` joins ``FrameReceiver`` -> ``CommandProcessor`` -> ``FrameSender`` over byte
streams (a UART on a board, a plain byte stream in simulation). Every command frame gets exactly
one response frame: opcode | 0x80, payload = status byte then data.

Implemented so far: ``IDENTIFY`` (data from ``onebit.host.protocol.encode_identify``),
``RESET`` (acknowledged), and the error answers: ``BAD_CRC`` for a frame whose CRC fails (its
effects must not be kept), ``BAD_LENGTH`` for a payload of the wrong size, ``UNKNOWN_OPCODE``
for any other opcode, including the GEMM commands, which come with the next piece of the link.
"""

from amaranth.hdl import Array, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..host.core_config import CoreConfig
from ..host.protocol import Opcode, Status, encode_identify
from .frame_rx import EventKind, FrameReceiver, event_layout
from .frame_tx import FrameSender, header_layout

__all__ = ["CommandProcessor", "DeviceLink"]


class CommandProcessor(wiring.Component):
    """Answer each checked frame with one response (header, then status and data bytes).

    Members
    -------
    events : In(stream.Signature(event_layout()))
    header : Out(stream.Signature(header_layout()))
    data : Out(stream.Signature(8))
    """

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self._identify = encode_identify(config)
        super().__init__({"events": In(stream.Signature(event_layout())),
                          "header": Out(stream.Signature(header_layout())),
                          "data": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        ident = Array(Const(b, 8) for b in self._identify)
        opcode = Signal(8)
        length = Signal(16)
        status = Signal(8)
        reply_len = Signal(range(len(self._identify) + 1))
        index = Signal(range(len(self._identify) + 1))
        ev = self.events.payload
        with m.FSM():
            with m.State("WAIT"):
                m.d.comb += self.events.ready.eq(1)
                with m.If(self.events.valid):
                    with m.If(ev.kind == EventKind.HEADER):
                        m.d.sync += [opcode.eq(ev.opcode), length.eq(ev.value)]
                    with m.Elif(ev.kind == EventKind.END):
                        m.d.sync += reply_len.eq(0)
                        with m.If(~ev.ok):
                            m.d.sync += status.eq(Status.BAD_CRC)
                        with m.Elif((opcode == Opcode.IDENTIFY) | (opcode == Opcode.RESET)):
                            with m.If(length != 0):
                                m.d.sync += status.eq(Status.BAD_LENGTH)
                            with m.Else():
                                m.d.sync += status.eq(Status.OK)
                                with m.If(opcode == Opcode.IDENTIFY):
                                    m.d.sync += reply_len.eq(len(self._identify))
                        with m.Else():
                            m.d.sync += status.eq(Status.UNKNOWN_OPCODE)
                        m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.header.valid.eq(1),
                             self.header.payload.opcode.eq(opcode | 0x80),
                             self.header.payload.length.eq(reply_len + 1)]
                with m.If(self.header.ready):
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(status)]
                with m.If(self.data.ready):
                    m.d.sync += index.eq(0)
                    m.next = "DATA"
                    with m.If(reply_len == 0):
                        m.next = "WAIT"
            with m.State("DATA"):
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(ident[index])]
                with m.If(self.data.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == reply_len - 1):
                        m.next = "WAIT"
        return m


class DeviceLink(wiring.Component):
    """Bytes in, bytes out: the whole device side of the host link.

    Members
    -------
    i : In(stream.Signature(8))
    o : Out(stream.Signature(8))
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, config: CoreConfig, *, timeout: int = 1 << 16):
        self._config, self._timeout = config, timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = FrameReceiver(timeout=self._timeout)
        m.submodules.proc = proc = CommandProcessor(self._config)
        m.submodules.tx = tx = FrameSender()
        wiring.connect(m, wiring.flipped(self.i), rx.i)
        wiring.connect(m, rx.o, proc.events)
        wiring.connect(m, proc.header, tx.header)
        wiring.connect(m, proc.data, tx.data)
        wiring.connect(m, tx.o, wiring.flipped(self.o))
        return m
