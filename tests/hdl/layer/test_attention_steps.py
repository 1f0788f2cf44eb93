# amaranth: UnusedElaboratable=no
"""AttentionSteps: each token's Kb|Vb row goes to the KV stream, each Qb row with its position to
the query stream, each context answer into its Cb row, with backpressure and delays on the
attention side; an answer's error stops the steps with ``fault``."""

import random

import pytest
from amaranth.sim import Simulator

from onebit.hdl.layer.attention_steps import AttentionSteps
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.host.layer_layout import act_regions

DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    act_words=256, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))
L, D = DEV.core.lanes, DEV.layer.d_model
Dw = D // L
REG = act_regions(DEV)


def _join(words):
    return sum(w << (L * j) for j, w in enumerate(words))


@pytest.mark.parametrize("fault", [False, True])
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("act_latency", [1, 2])
def test_rows_move_between_the_store_and_the_attention_unit(seed, fault, act_latency):
    rng = random.Random(seed * 2 + fault)
    dut = AttentionSteps(DEV, act_latency=act_latency)
    t, len0 = rng.randint(1, 5), rng.randrange(6)
    store = {a: rng.randrange(1 << L) for a in range(DEV.act_words)}
    rows = [[store[REG["qkv"] + i * 3 * Dw + j] for j in range(3 * Dw)] for i in range(t)]
    answers = [rng.randrange(1 << D) for _ in range(t)]
    bad = rng.randrange(t) if fault else None
    kvs, qs, writes, ends = [], [], [], []

    async def bench(ctx):
        ctx.set(dut.t, t)
        ctx.set(dut.len0, len0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.t, 0)                  # taken at start
        cycles = 0
        while True:
            _, _, done, fault_now = await ctx.tick().sample(dut.done, dut.fault)
            cycles += 1
            assert cycles < 2000
            if done or fault_now:
                ends.append("done" if done else "fault")
                break

    async def store_port(ctx):
        port = 0                      # the store's read data (latency 1; it holds without ren)
        async for _, _, ren, addr, wen, waddr, wdata in ctx.tick().sample(
                dut.act_ren, dut.act_raddr, dut.cb_wen, dut.cb_waddr, dut.cb_wdata):
            behind = port             # what a register behind the port holds now
            if ren:
                port = store[addr]
            ctx.set(dut.act_rdata, port if act_latency == 1 else behind)
            if wen:
                writes.append((waddr, wdata))

    async def attention(ctx):
        pending = []
        while True:
            kv_ready, q_ready = rng.random() < 0.6, rng.random() < 0.6
            ctx.set(dut.kv.ready, kv_ready)
            ctx.set(dut.q.ready, q_ready)
            if pending and pending[0][0] <= 0:
                ctx.set(dut.c.valid, 1)
                ctx.set(dut.c.payload, {"bits": answers[pending[0][1]],
                                        "error": pending[0][1] == bad})
            _, _, kv_v, kv_p, q_v, q_p, c_v, c_r = await ctx.tick().sample(
                dut.kv.valid, dut.kv.payload, dut.q.valid, dut.q.payload, dut.c.valid,
                dut.c.ready)
            if kv_v and kv_ready:
                kvs.append((kv_p.k, kv_p.v))
            if q_v and q_ready:
                qs.append((q_p.q, q_p.pos))
                pending.append([rng.randrange(8), len(qs) - 1])
            if c_v and c_r:
                pending.pop(0)
                ctx.set(dut.c.valid, 0)
            for p in pending:
                p[0] -= 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(store_port, background=True)
    sim.add_testbench(attention, background=True)
    sim.run()
    assert kvs == [(_join(r[Dw:2 * Dw]), _join(r[2 * Dw:])) for r in rows]
    queries = [(_join(r[:Dw]), len0 + i) for i, r in enumerate(rows)]
    assert qs == queries[:len(qs)]          # (a fault stops the queries)
    answered = t if bad is None else bad
    want = [(REG["cb"] + i * Dw + j, (answers[i] >> (L * j)) & ((1 << L) - 1))
            for i in range(answered) for j in range(Dw)]
    assert writes == want
    assert ends == (["fault"] if fault else ["done"])
    if not fault:
        assert len(qs) == t


def test_act_latency_is_checked():
    with pytest.raises(ValueError, match=r"act_latency must be 1 or 2 \(cycles from act_ren to "
                                         r"act_rdata\), not 0"):
        AttentionSteps(DEV, act_latency=0)
