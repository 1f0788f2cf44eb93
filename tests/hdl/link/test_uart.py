# amaranth: UnusedElaboratable=no
"""UART: loopback of random bytes, a receiver fed by a waveform at a baud rate 2% off,
framing errors detected, and parameters checked."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from onebit.hdl.link.uart import UARTRx, UARTTx, divisor_for
from onebit.sim.streams import get_all, put_all


@pytest.mark.parametrize("divisor", [4, 5, 13])
def test_loopback_with_backpressure(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=divisor)
    m.submodules.rx = rx = UARTRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(40)]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def producer(ctx):
        await put_all(ctx, tx.i, data, rng=rng, idle=0.3)

    async def consumer(ctx):
        # Backpressure shorter than a byte time never overruns the receiver.
        got.extend(await get_all(ctx, rx.o, len(data), rng=rng, stall=0.5))

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * 12 * divisor * (len(data) + 5))
    assert got == data


def waveform(byte: int, bit_cycles: float, *, stop: int = 1) -> list[int]:
    levels = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
    out, t = [], 0.0
    for level in levels:
        t += bit_cycles
        out += [level] * (round(t) - len(out))
    return out + [1] * 3


@pytest.mark.parametrize("skew", [0.98, 1.0, 1.02])
def test_receiver_tolerates_baud_error(skew):
    divisor = 8
    dut = UARTRx(divisor=divisor)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80]
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def drive(ctx):
        ctx.set(dut.o.ready, 1)
        for byte in data:
            for level in waveform(byte, divisor * skew):
                ctx.set(dut.rx, level)
                _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                if valid:
                    got.append(payload)
        for _ in range(4):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(payload)

    sim.add_testbench(drive)
    sim.run()
    assert got == data


def test_framing_error_drops_the_byte():
    dut = UARTRx(divisor=6)
    events = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def drive(ctx):
        ctx.set(dut.o.ready, 1)
        for byte, stop in ((0x3C, 0), (0x42, 1)):
            for level in waveform(byte, 6, stop=stop) + [1] * 6:
                ctx.set(dut.rx, level)
                _, _, valid, payload, ferr = await ctx.tick().sample(
                    dut.o.valid, dut.o.payload, dut.frame_error)
                if valid:
                    events.append(("byte", payload))
                if ferr:
                    events.append(("frame_error",))

    sim.add_testbench(drive)
    sim.run()
    assert events == [("frame_error",), ("byte", 0x42)]


def test_overrun_drops_the_waiting_byte():
    # Nothing is taken while three bytes arrive: the first waits in the output register, the
    # second behind it in the shift register until the third's first data bit, which drops it
    # (one ``overrun`` pulse); then the consumer gets the first and the third.
    dut = UARTRx(divisor=5)
    data = [0x11, 0x22, 0x33]
    pulses = 0
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def drive(ctx):
        nonlocal pulses
        for byte in data:
            for level in waveform(byte, 5):
                ctx.set(dut.rx, level)
                _, _, overrun = await ctx.tick().sample(dut.overrun)
                pulses += overrun
        ctx.set(dut.o.ready, 1)
        for _ in range(8):
            _, _, valid, payload, overrun = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.overrun)
            pulses += overrun
            if valid:
                got.append(payload)

    sim.add_testbench(drive)
    sim.run()
    assert (got, pulses) == ([0x11, 0x33], 1)


def test_divisor_checks():
    assert divisor_for(48_000_000, 12_000_000) == 4
    assert divisor_for(12_000_000, 115_200) == 104
    with pytest.raises(ValueError, match="needs at least 4 clock cycles per bit"):
        divisor_for(12_000_000, 12_000_000)
    with pytest.raises(ValueError, match="cannot make 3000000 baud within 2%"):
        divisor_for(25_000_000, 3_000_000)
    with pytest.raises(ValueError, match="Divisor must be an integer of at least 4, not 3"):
        UARTTx(divisor=3)
