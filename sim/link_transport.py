"""A byte transport into ``DeviceLink`` running on Amaranth's simulator.

``write`` queues bytes; ``read`` advances the simulation (at most ``cycles_per_read`` cycles)
until response bytes appear, and returns them. A testbench coroutine moves bytes between the
queues and the device's streams with the stream handshakes, so the host driver talks to the
real gateware. ``reset_device`` pulses the device's reset (a board's reset button), for fault
injection. With a layer engine, ``step_cycles`` counts the cycles spent in each of its steps
(``EngineStep``, sampled every cycle from the device's ``layer_step``): a profile of the
layer.
"""

from __future__ import annotations

from collections import deque

from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from ..hdl.link.device import DeviceLink
from ..host.device_config import DeviceConfig

__all__ = ["AmaranthLinkTransport"]


class AmaranthLinkTransport:
    def __init__(self, dev: DeviceConfig | None = None, *, cycles_per_read: int = 4000,
                 timeout_cycles: int = 256):
        dev = dev or DeviceConfig()
        if "ice40_spram" in (dev.weight_store, dev.core.weight_memory):
            raise ValueError("Amaranth's simulator cannot run iCE40 SPRAM blocks: use "
                             "simulator='icarus' or 'verilator' for an SPRAM design")
        self.dut = DeviceLink(dev, timeout=timeout_cycles)
        self._timeout_cycles = timeout_cycles
        self._to_device: deque[int] = deque()
        self._from_device = bytearray()
        self._cycles_per_read = cycles_per_read
        self._reset = Signal()
        self._reset_pending = False
        self.cycles = 0
        self.step_cycles: dict[int, int] = {}
        self._sim = Simulator(ResetInserter(self._reset)(self.dut))
        self._sim.add_clock(1e-8)
        self._sim.add_testbench(self._pump, background=True)

    async def _pump(self, ctx):
        dut = self.dut
        steps = [dut.layer_step] if self.dut.config.layer is not None else []
        ctx.set(dut.o.ready, 1)
        while True:
            if self._reset_pending:
                self._reset_pending = False
                ctx.set(self._reset, 1)
                await ctx.tick()
                ctx.set(self._reset, 0)
            if self._to_device and not ctx.get(dut.i.valid):
                ctx.set(dut.i.payload, self._to_device[0])
                ctx.set(dut.i.valid, 1)
            _, _, iv, ir, ov, op, *st = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.payload, *steps)
            self.cycles += 1
            if st:
                step = int(st[0])
                self.step_cycles[step] = self.step_cycles.get(step, 0) + 1
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
        out = bytes(self._from_device)
        self._from_device.clear()
        return out

    def deliver(self) -> None:
        """Run the simulation until the device has taken every queued byte."""
        while self._to_device:
            self._sim.advance()

    def drain(self) -> None:
        """Deliver what is queued, stay idle past the device's timeout, discard the output."""
        self.deliver()
        for _ in range(2 * self._timeout_cycles + 16):
            self._sim.advance()
        self._from_device.clear()

    def reset_device(self) -> None:
        """Pulse the device's reset at the next cycle."""
        self._reset_pending = True

    def close(self) -> None:
        self._to_device.clear()
