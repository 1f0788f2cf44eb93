"""The host side of the link: requests and responses over any byte transport.

A transport moves bytes (``write``; ``read`` returns what has arrived, possibly nothing, and
never blocks past its own timeout). The same :class:`LinkClient` runs over the simulated
gateware (``onebit.sim.link_transport``) and over a serial port.
"""

from __future__ import annotations

import time
from typing import Protocol

from .protocol import FrameDecoder, Opcode, Status, decode_identify, encode_frame

__all__ = ["Transport", "LinkClient", "LinkError", "LinkTimeout", "DeviceError"]


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self) -> bytes: ...
    def close(self) -> None: ...


class LinkError(RuntimeError):
    """The link failed."""


class LinkTimeout(LinkError):
    """No complete response arrived in time."""


class DeviceError(LinkError):
    """The device answered with an error status."""

    def __init__(self, opcode: int, status: int):
        self.opcode, self.status = opcode, status
        name = Status(status).name if status in Status._value2member_map_ else hex(status)
        super().__init__(f"device answered {_name(opcode)} with {name}")


def _name(opcode: int) -> str:
    return Opcode(opcode).name if opcode in Opcode._value2member_map_ else hex(opcode)


class LinkClient:
    """Send one command frame, wait for its response frame; retry nothing silently."""

    def __init__(self, transport: Transport, *, timeout: float = 2.0):
        self._transport = transport
        self._decoder = FrameDecoder()
        self.timeout = timeout

    def request(self, opcode: int, payload: bytes = b"") -> bytes:
        """Return the response data of ``opcode``; raise :class:`DeviceError` on an error
        status and :class:`LinkTimeout` if no response arrives within ``timeout`` seconds."""
        self._transport.write(encode_frame(int(opcode), payload))
        deadline = time.monotonic() + self.timeout
        while True:
            for frame in self._decoder.feed(self._transport.read()):
                if frame.opcode != (int(opcode) | 0x80) or not frame.payload:
                    continue           # a stale or foreign frame: not ours
                status, data = frame.payload[0], frame.payload[1:]
                if status != Status.OK:
                    raise DeviceError(opcode, status)
                return data
            if time.monotonic() > deadline:
                self._decoder.resync()
                raise LinkTimeout(f"no response to {_name(opcode)} within {self.timeout} s")

    def identify(self):
        """Return the device's ``CoreConfig``."""
        return decode_identify(self.request(Opcode.IDENTIFY))

    def close(self) -> None:
        self._transport.close()
