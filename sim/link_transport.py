"""A byte transport into ``DeviceLink`` running on Amaranth's simulator.

``write`` queues bytes; ``read`` advances the simulation (at most ``cycles_per_read`` cycles)
until response bytes appear, and returns them. A testbench coroutine moves bytes between the
queues and the device's streams with the stream handshakes, so the host driver talks to the
real gateware.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from ..hdl.link import DeviceLink
from ..host.core_config import CoreConfig

__all__ = ["AmaranthLinkTransport"]


class AmaranthLinkTransport:
    def __init__(self, config: CoreConfig | None = None, *, cycles_per_read: int = 2000,
                 timeout_cycles: int = 256):
        self.dut = DeviceLink(config or CoreConfig(), timeout=timeout_cycles)
        self._to_device: deque[int] = deque()
        self._from_device = bytearray()
        self._cycles_per_read = cycles_per_read
        self.cycles = 0
        self._sim = Simulator(self.dut)
        self._sim.add_clock(1e-8)
        self._sim.add_testbench(self._pump, background=True)

    async def _pump(self, ctx):
        dut = self.dut
        ctx.set(dut.o.ready, 1)
        while True:
            if self._to_device and not ctx.get(dut.i.valid):
                ctx.set(dut.i.payload, self._to_device[0])
                ctx.set(dut.i.valid, 1)
            _, _, iv, ir, ov, op = await ctx.tick().sample(dut.i.valid, dut.i.ready,
                                                           dut.o.valid, dut.o.payload)
            self.cycles += 1
            if iv and ir:
                self._to_device.popleft()
                ctx.set(dut.i.valid, 0)
            if ov:
                self._from_device.append(op)

    def write(self, data: bytes) -> None:
        self._to_device.extend(data)

    def read(self) -> bytes:
        for _ in range(self._cycles_per_read):
            self._sim.advance()
            if self._from_device and not self._to_device:
                break
        # Let a response that has started finish its frame before returning.
        out = bytes(self._from_device)
        self._from_device.clear()
        return out

    def close(self) -> None:
        self._to_device.clear()
