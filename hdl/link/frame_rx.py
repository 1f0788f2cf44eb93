"""Frame receiver: turns the host link's byte stream into checked frame events.

The frame format is ``onebit.host.protocol``'s (start byte, opcode, length, header CRC-8,
payload, CRC-32). Events on ``o``, in order, for each frame whose header checks:

- ``HEADER`` with the opcode and the length;
- one ``DATA`` event per payload byte (so a command can consume its payload as it arrives);
- ``END`` with ``ok`` set if the CRC-32 matched. A consumer must not act on a frame (write
  memory, start work) before its ``END`` says ``ok``, or must be able to undo it.

Bytes outside a frame are skipped. A frame whose header CRC-8 fails gives no event: the
receiver goes back to hunting for a start byte after the header. A frame whose next byte does
not arrive for ``timeout`` cycles in the middle gives ``END`` with ``ok`` clear and
``timed_out`` set (cycles while a byte waits on ``i``, taken or not, do not count).

Handshake: ``i`` is taken when the receiver can pass on what the byte produces (its output
register empty, for bytes that make an event); ``o`` follows the stream rules (registered). The
output register loads only when empty, so an event goes out at most every other cycle (ample
for a UART's bytes), and ``o.ready`` reaches nothing but ``o.valid``'s clear (timing: the
receiver's decisions start from its own registers).
"""

import enum

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from ...host.protocol import START

__all__ = ["FrameReceiver", "EventKind", "event_layout"]


class EventKind(enum.IntEnum):
    HEADER = 0
    DATA = 1
    END = 2


def event_layout() -> data.StructLayout:
    """An event: its kind, the opcode (HEADER), the length (HEADER) or byte (DATA), status."""
    return data.StructLayout({"kind": EventKind, "opcode": 8, "value": 16, "ok": 1,
                              "timed_out": 1})


class FrameReceiver(wiring.Component):
    """Parse and check frames from a byte stream.

    Parameters
    ----------
    timeout : int
        Cycles without a byte after which a frame in progress is abandoned.

    Members
    -------
    i : In(stream.Signature(8))
    o : Out(stream.Signature(event_layout()))
    bad_header : Out(1)
        Pulses when a header check fails.
    """

    def __init__(self, *, timeout: int = 1 << 16):
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"Timeout must be an integer of at least 2 cycles, not {timeout!r}")
        self._timeout = timeout
        super().__init__({"i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(event_layout())),
                          "bad_header": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc8 = crc8 = catalog.CRC8_SMBUS(8).create()
        m.submodules.crc32 = crc32 = catalog.CRC32_ISO_HDLC(8).create()
        byte = self.i.payload
        opcode = Signal(8)
        length = Signal(16)
        count = Signal(3)               # CRC bytes taken
        left = Signal(16)               # data bytes still to come (a down-counter: timing)
        idle = Signal(range(self._timeout + 1))
        take = Signal()
        emit = Signal()
        event = Signal(event_layout())
        in_frame = Signal()
        no_data = Signal()

        # The CRCs take each byte the cycle after it is taken, from registers (timing: the
        # input's handshake and the CRC's XOR network were one path). So the header CRC is
        # compared in HCHECK, and the frame's CRC once its last byte is in (below).
        c_byte = Signal(8)
        c8_valid, c32_valid = Signal(), Signal()
        crc8_take, crc32_take = Signal(), Signal()
        # The start too, a cycle after the start byte is taken (timing: the byte's compare with
        # START was in the CRC registers' path); the first byte after it is taken a cycle later
        # at the earliest, so the CRCs start before they take it.
        crc_start, c_start = Signal(), Signal()
        m.d.sync += [c_byte.eq(byte), c8_valid.eq(crc8_take), c32_valid.eq(crc32_take),
                     c_start.eq(crc_start)]
        m.d.comb += [crc8.data.eq(c_byte), crc32.data.eq(c_byte),
                     crc8.valid.eq(c8_valid), crc32.valid.eq(c32_valid),
                     crc8.start.eq(c_start), crc32.start.eq(c_start),
                     event.opcode.eq(opcode)]
        hcrc = Signal(8)
        hcrc_bad = Signal()
        # The frame CRC's check, registered (timing: a 32-bit compare into the END event); it
        # describes the last byte once ``c32_valid`` has been low for a cycle (``c32_busy``).
        crc_ok, c32_busy = Signal(), Signal()
        m.d.sync += [crc_ok.eq(crc32.match_detected), c32_busy.eq(c32_valid)]
        # All four CRC bytes are in and the check describes them, as a register a cycle late
        # (timing: the count's and the CRC pipeline's tests were in the output's handshake).
        # (``count`` is 0 from HCRC on, so the flag is clear before CRC.)
        crc_done = Signal()
        m.d.sync += crc_done.eq(count[2] & ~c32_valid & ~c32_busy)

        def end(*, ok=0, timeout=0):
            """Emit the END event of the current frame."""
            return [emit.eq(1), event.kind.eq(EventKind.END), event.ok.eq(ok),
                    event.timed_out.eq(timeout)]
        m.d.sync += self.bad_header.eq(0)
        # Output register: loads only when empty (timing: ``o.ready`` stays out of the
        # decisions below).
        out_free = ~self.o.valid
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(emit):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(event)]

        # Inter-byte timeout inside a frame: ``expired`` is set (and stays set) the cycle the
        # idle count reaches the timeout, so the decision starts from a register (timing).
        # A byte waiting on ``i`` restarts the count whether or not it is taken (it is the
        # sender that must not stall, not this side's output; and ``i.ready`` would bring
        # the state decode into the count's reset: timing).
        expired = Signal()
        with m.If(~in_frame | self.i.valid):
            m.d.sync += [idle.eq(0), expired.eq(0)]
        with m.Else():
            m.d.sync += [idle.eq(idle + 1), expired.eq(expired | (idle == self._timeout - 1))]
        # (Inside a frame ``expired`` alone says the frame timed out: outside one it is cleared,
        # so the states below test it without ``in_frame``, a decode of the state: timing.)

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [self.i.ready.eq(1), take.eq(self.i.valid)]
                with m.If(self.i.valid & (byte == START)):
                    m.d.comb += crc_start.eq(1)
                    m.next = "OPCODE"
            # The header bytes: opcode, then the length, low byte first.
            for state, field, following in (("OPCODE", opcode, "LEN0"),
                                            ("LEN0", length[:8], "LEN1"),
                                            ("LEN1", length[8:], "HCRC")):
                with m.State(state):
                    m.d.comb += [in_frame.eq(1), self.i.ready.eq(1)]
                    with m.If(expired):
                        m.next = "HUNT"
                    with m.Elif(self.i.valid):
                        m.d.comb += [crc8_take.eq(1), crc32_take.eq(1)]
                        m.d.sync += field.eq(byte)
                        m.next = following
            with m.State("HCRC"):
                # Take the header CRC byte; HCOMPARE compares it a cycle later, into a register
                # that HCHECK decides on (timing: the CRC register, an 8-bit compare and the
                # output's handshake were one path).
                m.d.comb += [in_frame.eq(1), self.i.ready.eq(1)]
                with m.If(expired):
                    m.next = "HUNT"
                with m.Elif(self.i.valid):
                    m.d.sync += [hcrc.eq(byte), count.eq(0), left.eq(length),
                                 no_data.eq(length == 0)]
                    m.next = "HCOMPARE"
            with m.State("HCOMPARE"):
                m.d.sync += hcrc_bad.eq(hcrc != crc8.crc)
                m.next = "HCHECK"
            with m.State("HCHECK"):
                with m.If(hcrc_bad):
                    m.d.sync += self.bad_header.eq(1)
                    m.next = "HUNT"
                with m.Elif(out_free):
                    m.d.comb += [emit.eq(1), event.kind.eq(EventKind.HEADER),
                                 event.value.eq(length)]
                    m.next = "DATA"
                    with m.If(no_data):
                        m.next = "CRC"
            with m.State("DATA"):
                m.d.comb += in_frame.eq(1)
                with m.If(expired & out_free):
                    m.d.comb += end(timeout=1)
                    m.next = "HUNT"
                with m.Else():
                    m.d.comb += self.i.ready.eq(out_free)
                    with m.If(self.i.valid & out_free):
                        m.d.comb += [crc32_take.eq(1), emit.eq(1),
                                     event.kind.eq(EventKind.DATA), event.value.eq(byte)]
                        m.d.sync += left.eq(left - 1)
                        with m.If(left == 1):
                            m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += in_frame.eq(1)
                with m.If(expired & out_free):
                    m.d.comb += end(timeout=1)
                    m.next = "HUNT"
                with m.Elif(crc_done):
                    # The four CRC bytes are in: the register holds the residue of a good frame.
                    with m.If(out_free):
                        m.d.comb += end(ok=crc_ok)
                        m.next = "HUNT"
                # (``count`` counts to 4: its top bit says all four are in. A timed-out frame
                # takes no byte, whether or not its END can go out yet: timing.)
                with m.If(~count[2] & ~expired):
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        m.d.comb += crc32_take.eq(1)
                        m.d.sync += count.eq(count + 1)
        return m
