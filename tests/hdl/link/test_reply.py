"""ReplySender: every kind of answer, byte for byte, against the protocol, with backpressure on
its header and data streams; ``done`` once, on the last byte; ``error`` for error answers."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from onebit.hdl.link.reply import Reply, ReplySender
from onebit.host.core_config import CORE_COUNTERS, CoreConfig
from onebit.host.device_config import RESIDUAL_BYTES, DeviceConfig, LayerConfig
from onebit.host.protocol import LAYER_ANSWER, LINK_COUNTERS, Status, encode_identify
from onebit.sim.streams import get_all

DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    act_words=256, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))


def _le(words, size):
    return b"".join((w & ((1 << 8 * size) - 1)).to_bytes(size, "little") for w in words)


@pytest.mark.parametrize("family", ["none", "ice40"])
def test_answers_match_the_protocol(family):
    rng = random.Random(family)
    dut = ReplySender(DEV)
    c = DEV.core
    results = [rng.randrange(1 << DEV.result_word_bits) for _ in range(DEV.result_beats)]
    resid = [rng.randrange(1 << 16 * c.cols) for _ in range(DEV.layer.res_words)]
    bank = [rng.randrange(1 << 32) for _ in LINK_COUNTERS]
    counters = {n: rng.randrange(1 << 32) for n in CORE_COUNTERS}
    info = [rng.randrange(1 << 32) for _ in LAYER_ANSWER]
    cases = []
    for _ in range(24):
        kind = rng.choice(list(Reply))
        status = Status.OK if rng.random() < 0.8 else rng.choice(list(Status))
        a = {"status": status, "opcode": rng.randrange(128), "tag": rng.randrange(256),
             "kind": kind, "offset": 0, "stored_thr": rng.randrange(2), "words_sel": 0}
        if kind == Reply.IDENT:
            data = encode_identify(DEV)
        elif kind == Reply.WORDS:
            a["words_sel"] = rng.randrange(2)
            words = ([counters[n] for n in CORE_COUNTERS] + bank if a["words_sel"] else
                     info[:rng.choice([2, 3])])
            data = _le(words, 4)
        elif kind == Reply.RESULTS:
            bpb = DEV.result_beat_bytes(bool(a["stored_thr"]))
            a["offset"] = rng.randrange(DEV.result_beats)
            count = rng.randrange(min(4, DEV.result_beats - a["offset"]) + 1)
            data = _le(results[a["offset"]:a["offset"] + count], bpb)
        elif kind == Reply.RESIDUAL:
            a["offset"] = rng.randrange(DEV.layer.res_words)
            count = rng.randrange(min(4, DEV.layer.res_words - a["offset"]) + 1)
            data = _le(resid[a["offset"]:a["offset"] + count], RESIDUAL_BYTES * c.cols)
        else:
            data = b""
        a["length"] = len(data)
        sent = data if status == Status.OK else b""
        cases.append((a, {"opcode": a["opcode"] | 0x80, "length": len(sent) + 2},
                      bytes([status, a["tag"]]) + sent))
    headers, payload, errors = [], [], []

    async def drive(ctx):
        ctx.set(dut.core_counters, counters)
        for i, w in enumerate(info):
            ctx.set(dut.info[i], w)
        for a, _, data in cases:
            for name, value in a.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.start, 1)
            done, cycles = 0, 0
            while not done:
                # (Sampled at the clock edge: ``done`` and ``error`` follow the sinks' ready.)
                _, _, done, error = await ctx.tick().sample(dut.done, dut.error)
                ctx.set(dut.start, 0)
                cycles += 1
                errors.append(error)
                assert cycles < 200 + 20 * len(data), a
            await ctx.tick()
            _, _, again = await ctx.tick().sample(dut.done)
            assert not again

    async def stores(ctx):
        # The stores answer a read the cycle after (and hold); the counter bank too (the
        # sender waits its four cycles).
        res = rsd = bnk = 0
        async for _, _, res_ren, res_addr, rsd_ren, rsd_addr, bnk_ren, bnk_addr in \
                ctx.tick().sample(dut.res_ren, dut.res_raddr, dut.resid_ren, dut.resid_raddr,
                                  dut.bank_ren, dut.bank_raddr):
            res = results[res_addr] if res_ren else res
            rsd = resid[rsd_addr] if rsd_ren else rsd
            bnk = bank[bnk_addr] if bnk_ren else bnk
            ctx.set(dut.res_rdata, res)
            ctx.set(dut.resid_rdata, rsd)
            ctx.set(dut.bank_rdata, bnk)

    async def header_sink(ctx):
        headers.extend(await get_all(ctx, dut.header, len(cases), rng=rng, stall=0.4,
                                     convert=lambda p: {"opcode": p.opcode,
                                                        "length": p.length}))

    async def data_sink(ctx):
        payload.extend(await get_all(ctx, dut.data, sum(len(d) for _, _, d in cases),
                                     rng=rng, stall=0.4))

    platform = None
    if family == "ice40":
        class Platform:
            family = "ice40"
        platform = Platform()
    sim = Simulator(Fragment.get(dut, platform))
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(stores, background=True)
    sim.add_testbench(header_sink)
    sim.add_testbench(data_sink)
    sim.run()
    assert headers == [h for _, h, _ in cases]
    assert bytes(payload) == b"".join(d for _, _, d in cases)
    assert sum(errors) == sum(a["status"] != Status.OK for a, _, _ in cases)
