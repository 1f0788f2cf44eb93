"""The host side of the link: tagged requests and responses over any byte transport.

A transport moves bytes: ``write``; ``read`` returns what has arrived, possibly nothing, and
never blocks past its own short poll interval; ``drain`` lets the line go quiet for longer than
the device's inter-byte timeout (so the device abandons any partial frame) and discards what
arrives meanwhile. The same :class:`LinkClient` runs over simulated gateware
(``onebit.sim``) and over a serial port (``onebit.host.serial_transport``).

Every command carries a tag its response echoes; a response with another tag or opcode (a late
answer to an earlier command) is skipped. A command whose frame was damaged on the way
(``BAD_CRC``, ``TIMED_OUT``) or whose answer did not arrive in time is sent again, at most
``retries`` times, after a drain: every command is idempotent (a LOAD writes the same data to
the same place, a RUN computes the same results), so a retry never changes a result. LAYER
is the exception (it updates rows in place and appends to a KV cache): it is sent again only
after a damaged-frame answer, which says it did not run (``NOT_REPEATABLE``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from .protocol import (
    FrameDecoder,
    Opcode,
    Status,
    decode_identify,
    encode_args,
    encode_frame,
)

__all__ = ["Transport", "LinkClient", "LinkError", "LinkTimeout", "DeviceError", "LinkStats"]


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self) -> bytes: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class LinkError(RuntimeError):
    """The link failed."""


class LinkTimeout(LinkError):
    """No complete response arrived in time (after every retry)."""


class DeviceError(LinkError):
    """The device answered with an error status."""

    def __init__(self, opcode: int, status: int):
        self.opcode, self.status = opcode, status
        name = Status(status).name if status in Status._value2member_map_ else hex(status)
        super().__init__(f"device answered {_name(opcode)} with {name}")


def _name(opcode: int) -> str:
    return Opcode(opcode).name if opcode in Opcode._value2member_map_ else hex(opcode)


#: Statuses that mean the command frame was damaged on the way: safe to send again.
RETRYABLE = (Status.BAD_CRC, Status.TIMED_OUT)
#: Commands that change the device's state beyond what they write (LAYER replaces the residual
#: rows in place and appends to a KV cache): when their answer is lost the command may have run,
#: so it is not sent again; the caller must restore the state (load the rows, prefill again).
NOT_REPEATABLE = (Opcode.LAYER,)


@dataclass
class LinkStats:
    """What the client saw: commands sent, retries and why, skipped frames, and the bytes it
    wrote to the transport (``sent``: whole frames, retries included) and read from it
    (``received``)."""

    commands: int = 0
    sent: int = 0
    received: int = 0
    retries: int = 0
    timeouts: int = 0
    damaged: int = 0          # BAD_CRC or TIMED_OUT answers
    stale: int = 0            # well-formed frames with another tag or opcode
    errors: dict[str, int] = field(default_factory=dict)


class LinkClient:
    """Send a command frame and wait for its response frame, retrying damaged exchanges."""

    def __init__(self, transport: Transport, *, timeout: float = 2.0, retries: int = 3):
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self._transport = transport
        self._decoder = FrameDecoder()
        self._tag = 0
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats()

    @property
    def decoder(self) -> FrameDecoder:
        """The response decoder (its counters count damaged bytes from the device)."""
        return self._decoder

    def request(self, opcode: Opcode, data: bytes = b"", **args: int) -> bytes:
        """Send ``opcode`` with its arguments (``onebit.host.protocol.ARGUMENTS``, without
        ``tag``) and ``data``; return the response data. Raise :class:`DeviceError` on an error
        status and :class:`LinkTimeout` if no answer arrives within ``timeout`` seconds, each
        after ``retries`` further attempts where a retry is safe."""
        opcode = Opcode(opcode)
        self._tag = (self._tag + 1) & 0xFF
        frame = encode_frame(opcode, encode_args(opcode, tag=self._tag, **args) + bytes(data))
        self.stats.commands += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self._transport.drain()
                self._decoder = _fresh(self._decoder)
            self._transport.write(frame)
            self.stats.sent += len(frame)
            try:
                status, payload = self._await(opcode)
            except LinkTimeout as e:
                self.stats.timeouts += 1
                if opcode in NOT_REPEATABLE:
                    raise LinkTimeout(f"{e}; {opcode.name} may have run, so it is not sent "
                                      f"again: restore the residual rows and KV cache "
                                      f"(prefill again)") from e
                if attempt == self.retries:
                    raise
                continue
            if status == Status.OK:
                return payload
            if status in RETRYABLE and attempt < self.retries:
                self.stats.damaged += 1
                continue
            name = Status(status).name if status in Status._value2member_map_ else hex(status)
            self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
            raise DeviceError(opcode, status)
        raise AssertionError("unreachable")

    def _await(self, opcode: Opcode) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.timeout
        while True:
            data = self._transport.read()
            self.stats.received += len(data)
            for frame in self._decoder.feed(data):
                p = frame.payload
                if frame.opcode != opcode.response or len(p) < 2 or p[1] != self._tag:
                    self.stats.stale += 1
                    continue
                return p[0], p[2:]
            if time.monotonic() > deadline:
                raise LinkTimeout(f"no response to {opcode.name} within {self.timeout} s")

    def identify(self):
        """Return the device's ``DeviceConfig``."""
        return decode_identify(self.request(Opcode.IDENTIFY))

    def close(self) -> None:
        self._transport.close()


def _fresh(old: FrameDecoder) -> FrameDecoder:
    """A new decoder that keeps the old one's counters (a drain discards partial frames)."""
    new = FrameDecoder()
    new.garbage, new.bad_header, new.bad_crc = old.garbage + old.pending, old.bad_header, \
        old.bad_crc
    return new
