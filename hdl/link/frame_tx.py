"""Frame sender: wraps a header and payload bytes into the host link's frame format.

The format is ``onebit.host.protocol``'s: start byte, opcode, length (little-endian), header
CRC-8/SMBUS, payload, CRC-32/ISO-HDLC (little-endian) over opcode, length and payload.

Handshake: ``header`` (``{opcode, length}``) is taken when a frame starts; then exactly
``length`` bytes are taken from ``data`` as they go out. ``o`` is driven from the state and the
data stream only (never from ``o.ready``), so it follows the stream rules when ``data`` does.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ...host.protocol import START

__all__ = ["FrameSender", "header_layout"]


def header_layout() -> data.StructLayout:
    return data.StructLayout({"opcode": 8, "length": 16})


class FrameSender(wiring.Component):
    """Emit one frame per ``header`` beat, its payload taken from ``data``.

    Members
    -------
    header : In(stream.Signature(header_layout()))
    data : In(stream.Signature(8))
    o : Out(stream.Signature(8))
    """

    header: In(stream.Signature(header_layout()))
    data: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc8 = crc8 = catalog.CRC8_SMBUS(8).create()
        m.submodules.crc32 = crc32 = catalog.CRC32_ISO_HDLC(8).create()
        opcode = Signal(8)
        length = Signal(16)
        left = Signal(16)               # data bytes still to send (a down-counter: timing)
        # ``length == 0`` and ``left == 1`` as registers (timing: a 16-bit compare was in the
        # state machine's path from the handshake).
        empty, left_one = Signal(), Signal()
        # (Each state tests its own handshake, ``o.ready`` where ``o.valid`` is 1: timing, no
        # ``o.valid & o.ready`` decoded from every state in front of every state's next.)
        # The CRCs take each byte the cycle after it is sent, from registers (timing: the
        # byte's multiplexer and the CRC's XOR network were one path); HWAIT and DWAIT give
        # them that cycle before a CRC goes out.
        c_byte = Signal(8)
        c8_valid, c32_valid = Signal(), Signal()
        # (They restart from a register too, the cycle after the header is taken: START's byte
        # is not in them.)
        c_start = Signal()
        m.d.sync += [c_byte.eq(self.o.payload), c8_valid.eq(0), c32_valid.eq(0),
                     c_start.eq(0)]
        m.d.comb += [crc8.data.eq(c_byte), crc32.data.eq(c_byte),
                     crc8.valid.eq(c8_valid), crc32.valid.eq(c32_valid),
                     crc8.start.eq(c_start), crc32.start.eq(c_start)]

        def header_byte(state, value, following, *, crc):
            with m.State(state):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(value)]
                with m.If(self.o.ready):
                    if crc:
                        m.d.sync += [c8_valid.eq(1), c32_valid.eq(1)]
                    m.next = following

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += [opcode.eq(self.header.payload.opcode),
                                 length.eq(self.header.payload.length),
                                 left.eq(self.header.payload.length),
                                 empty.eq(self.header.payload.length == 0),
                                 left_one.eq(self.header.payload.length == 1)]
                    m.d.sync += c_start.eq(1)
                    m.next = "START"
            header_byte("START", START, "OPCODE", crc=False)
            header_byte("OPCODE", opcode, "LEN0", crc=True)
            header_byte("LEN0", length[:8], "LEN1", crc=True)
            header_byte("LEN1", length[8:], "HWAIT", crc=True)
            with m.State("HWAIT"):
                m.next = "HCRC"
            with m.State("HCRC"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc8.crc)]
                with m.If(self.o.ready):
                    m.next = "DATA"
                    with m.If(empty):
                        m.next = "CRC0"
            with m.State("DATA"):
                m.d.comb += [self.o.valid.eq(self.data.valid), self.o.payload.eq(self.data.payload),
                             self.data.ready.eq(self.o.ready)]
                with m.If(self.data.valid & self.o.ready):
                    m.d.sync += [c32_valid.eq(1), left.eq(left - 1), left_one.eq(left == 2)]
                    with m.If(left_one):
                        m.next = "DWAIT"
            with m.State("DWAIT"):
                m.next = "CRC0"
            for i in range(4):
                with m.State(f"CRC{i}"):
                    m.d.comb += [self.o.valid.eq(1),
                                 self.o.payload.eq(crc32.crc[8 * i:8 * i + 8])]
                    with m.If(self.o.ready):
                        m.next = f"CRC{i + 1}" if i < 3 else "IDLE"
        return m
