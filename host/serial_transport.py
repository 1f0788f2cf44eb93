"""A byte transport over a serial port (pyserial), for a board's UART link.

``read`` waits at most ``poll`` seconds for bytes; ``drain`` keeps the line quiet for
``quiet`` seconds (longer than the device's inter-byte timeout at any supported clock) and
discards what arrived.
"""

from __future__ import annotations

import time

__all__ = ["SerialTransport"]


class SerialTransport:
    def __init__(self, port: str, *, baud: int = 3_000_000, poll: float = 0.01,
                 quiet: float = 0.05):
        if isinstance(baud, bool) or not isinstance(baud, int) or not 300 <= baud <= 12_000_000:
            raise ValueError(f"baud must be an integer in 300..12000000, not {baud!r}")
        try:
            import serial
        except ImportError as e:       # pragma: no cover - pyserial is a dependency
            raise ImportError("the serial transport needs pyserial: pip install pyserial") from e
        self._quiet = quiet
        self._port = serial.serial_for_url(port, baudrate=baud, timeout=poll,
                                           write_timeout=10.0)

    def write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    def read(self) -> bytes:
        first = self._port.read(1)
        if not first:
            return b""
        return first + self._port.read(self._port.in_waiting)

    def drain(self) -> None:
        deadline = time.monotonic() + self._quiet
        while time.monotonic() < deadline:
            if self._port.read(max(1, self._port.in_waiting)):
                deadline = time.monotonic() + self._quiet
        self._port.reset_input_buffer()

    def close(self) -> None:
        self._port.close()
