"""ArgumentDecoder: the verdict of every command against a model of the protocol's checks, the
staged payload, and its latency, with idle cycles between events."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from onebit.hdl.link.arguments import ArgumentDecoder, above
from onebit.hdl.link.frame_rx import EventKind
from onebit.host.core_config import CoreConfig, Op
from onebit.host.device_config import DeviceConfig
from onebit.host.loads import loads
from onebit.host.protocol import ARGUMENTS, LAYER_OPCODES, RUN_THRESHOLD, Opcode, Status, args_size
from onebit.sim.streams import put_all, simulate

DEV = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=40, max_t=9, max_n=20),
                   frame_bytes=16, act_words=40, weight_words=100, thresh_words=30,
                   result_beats=24)
GO = {Opcode.IDENTIFY: "identify", Opcode.RUN: "run", Opcode.READ_RESULTS: "results",
      Opcode.READ_COUNTERS: "counters", Opcode.RESET: "reset"}


def expected(op: int, payload: bytes, stored_beats: int, stored_thr: bool) -> dict:
    """The verdict the protocol asks for (``docs/host-link.md``): status, go flag, LOAD store
    and unit, answer length."""
    if op not in ARGUMENTS or op in LAYER_OPCODES:      # (DEV has no layer engine)
        return {"status": Status.UNKNOWN_OPCODE}
    n_args = args_size(op)
    if len(payload) < n_args:
        return {"status": Status.BAD_LENGTH}
    fields, at = {}, 0
    for name, size in ARGUMENTS[op]:
        fields[name] = int.from_bytes(payload[at:at + size], "little")
        at += size
    data_len = len(payload) - n_args
    for i, (load_op, _, unit, depth) in enumerate(loads(DEV)):
        if op == load_op:
            if data_len > DEV.frame_bytes or data_len % unit:
                return {"status": Status.BAD_LENGTH}
            if fields["offset"] + data_len // unit > depth:
                return {"status": Status.OUT_OF_RANGE}
            return {"status": Status.OK, "go": "load", "sel": 1 << i, "unit_mask": unit - 1}
    if data_len:
        return {"status": Status.BAD_LENGTH}
    c = DEV.core
    if op == Opcode.RUN:
        f = fields
        bad = (f["op"] > max(Op) or f["flags"] & ~RUN_THRESHOLD or not 1 <= f["t"] <= c.max_t
               or not 1 <= f["n"] <= c.max_n or not 1 <= f["k"] <= c.max_k
               or f["act_base"] >= 1 << DEV.act_words.bit_length()
               or f["weight_base"] >= 1 << DEV.weight_words.bit_length()
               or (f["flags"] & RUN_THRESHOLD
                   and f["thresh_base"] >= 1 << DEV.thresh_words.bit_length()))
        return {"status": Status.OUT_OF_RANGE} if bad else {"status": Status.OK, "go": "run"}
    if op == Opcode.READ_RESULTS:
        if fields["offset"] + fields["count"] > stored_beats:
            return {"status": Status.OUT_OF_RANGE}
        return {"status": Status.OK, "go": "results",
                "length": fields["count"] * DEV.result_beat_bytes(stored_thr)}
    return {"status": Status.OK, "go": GO[Opcode(op)]}


def random_command(rng: random.Random) -> tuple[int, bytes]:
    op = rng.choice([*ARGUMENTS, 0x00, 0x40, Opcode.LAYER])
    if op not in ARGUMENTS:
        return op, bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
    out = bytearray()
    for _, size in ARGUMENTS[op]:
        value = rng.choice([rng.randrange(3), rng.randrange(1, 12), rng.randrange(1, 40),
                            rng.randrange(1 << 8 * size)])
        out += value.to_bytes(size, "little")
    extra = rng.choice([0, 0, 0, 1, 2, 4, 8, 12, 16, 20])
    out += bytes(rng.randrange(256) for _ in range(extra))
    if rng.random() < 0.1:
        out = out[:rng.randrange(len(out) + 1)]
    return op, bytes(out)


@pytest.mark.parametrize("seed", range(4))
def test_verdicts_match_the_protocol(seed):
    rng = random.Random(seed)
    dut = ArgumentDecoder(DEV)
    commands = [random_command(rng) for _ in range(60)]
    seen = []

    async def bench(ctx):
        for op, payload in commands:
            stored_beats, stored_thr = rng.randrange(DEV.result_beats + 1), rng.random() < 0.5
            ctx.set(dut.stored_beats, stored_beats)
            ctx.set(dut.stored_thr, stored_thr)
            ctx.set(dut.listen, 1)
            events = ([{"kind": EventKind.HEADER, "opcode": op, "value": len(payload)}] +
                      [{"kind": EventKind.DATA, "value": b} for b in payload])
            await put_all(ctx, dut.events, events, rng=rng, idle=0.3)
            ctx.set(dut.events.payload, {"kind": EventKind.END, "ok": 1})
            ctx.set(dut.events.valid, 1)
            assert ctx.get(dut.end) and ctx.get(dut.end_ok)
            await ctx.tick()
            ctx.set(dut.events.valid, 0)
            ctx.set(dut.listen, 0)
            latency = 1
            while not ctx.get(dut.decided):
                await ctx.tick()
                latency += 1
            await ctx.tick()
            assert latency == 4
            v = ctx.get(dut.verdict)
            got = {"status": Status(v.status)}
            flags = [name for name in ("load", "run", "results", "residual", "layer",
                                       "identify", "counters", "reset", "clear_cache")
                     if getattr(v.go, name)]
            assert len(flags) <= 1
            if flags:
                got["go"] = flags[0]
            want = expected(op, payload, stored_beats, stored_thr)
            if "sel" in want:
                got.update(sel=v.sel, unit_mask=v.unit_mask)
            if "length" in want:
                got["length"] = v.length
            seen.append(want["status"])
            assert got == want, (hex(op), payload.hex())
            if want.get("go") == "load":
                assert ctx.get(dut.data_len) == len(payload) - args_size(op)

    simulate(dut, bench)
    assert {Status.OK, Status.BAD_LENGTH, Status.OUT_OF_RANGE, Status.UNKNOWN_OPCODE} <= set(seen)


def test_the_payload_is_staged_and_end_reports_the_frame():
    """A LOAD's bytes after its arguments go to the staging buffer, at most ``frame_bytes``; a
    damaged or abandoned frame's END says so and starts no checks."""
    rng = random.Random(5)
    dut = ArgumentDecoder(DEV)
    args = (7).to_bytes(1, "little") + (2).to_bytes(4, "little")
    payload = bytes(rng.randrange(256) for _ in range(DEV.frame_bytes + 3))
    staged = {}

    async def bench(ctx):
        ctx.set(dut.listen, 1)
        events = ([{"kind": EventKind.HEADER, "opcode": Opcode.LOAD_WEIGHTS,
                    "value": len(args + payload)}] +
                  [{"kind": EventKind.DATA, "value": b} for b in args + payload])
        await put_all(ctx, dut.events, events, rng=rng, idle=0.3)
        for ok, timed_out in ((0, 1), (0, 0)):
            ctx.set(dut.events.payload, {"kind": EventKind.END, "ok": ok,
                                         "timed_out": timed_out})
            ctx.set(dut.events.valid, 1)
            assert ctx.get(dut.end) and not ctx.get(dut.end_ok)
            assert ctx.get(dut.end_timed_out) == timed_out
            await ctx.tick()
            ctx.set(dut.events.valid, 0)
            for _ in range(5):
                assert not ctx.get(dut.decided)
                await ctx.tick()
        assert ctx.get(dut.opcode) == Opcode.LOAD_WEIGHTS
        assert ctx.get(dut.args) & 0xFF_FFFF_FFFF == int.from_bytes(args, "little")
        ctx.set(dut.listen, 0)
        ctx.set(dut.events.valid, 1)
        assert not ctx.get(dut.events.ready)        # not taken while not listening

    async def collect(ctx):
        async for _, _, en, addr, byte in ctx.tick().sample(dut.stage.en, dut.stage.addr,
                                                            dut.stage.data):
            if en:
                staged[addr] = byte

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(collect, background=True)
    sim.run()
    assert bytes(staged[i] for i in range(DEV.frame_bytes)) == payload[:DEV.frame_bytes]
    assert sorted(staged) == list(range(DEV.frame_bytes))


@pytest.mark.parametrize("limit", [0, 1, 5, 8, 21, 63, 64, "signal"])
def test_above_is_greater_than(limit):
    """The narrow compare equals ``>`` for every value of a 7-bit operand (and every value of
    a 3-bit signal limit)."""
    value = Signal(7)
    lim = Signal(3) if limit == "signal" else limit
    out = Signal()
    m = Module()
    m.d.comb += out.eq(above(value, lim))

    async def bench(ctx):
        for lv in range(8) if limit == "signal" else [limit]:
            if limit == "signal":
                ctx.set(lim, lv)
            for v in range(128):
                ctx.set(value, v)
                assert ctx.get(out) == (v > lv), (v, lv)

    simulate(m, bench, clocked=False)
