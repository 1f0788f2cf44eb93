"""The layer engine inside the datapath against the golden layer: stores filled through the
host's write port in the host's layout (``onebit.host.layer_layout``), one LAYER start, the
residual rows read back. Prefill equals golden; decode (one token at a time on the cache)
equals prefill; the LM head's logits equal golden's; bad commands and a full cache are refused
without running anything. The same for an engine built for multi-bit activations
(``max_bits = 4``) at every A it takes, and a LAYER whose bits exceed the engine's is
refused."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from onebit.hdl.link.datapath import Datapath
from onebit.host import golden
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import PARAM_BITS, DeviceConfig, LayerConfig
from onebit.host.layer_layout import (
    head_param_values,
    head_param_words,
    head_weights,
    layer_param_values,
    layer_thresholds,
    layer_weight_words,
    layer_weights,
    param_words_per_layer,
)
from onebit.host.packing import pack_bits
from onebit.host.protocol import LAYER_BITS_SHIFT, LAYER_FRESH, LAYER_HEAD, LAYER_TERNARY, Status
from onebit.host.random_model import random_activations, random_layer, random_model

DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    act_words=256, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))
#: Array-equivalent cycles of one decode token on the GEMV unit at F = 32 (P = 4 words a line):
#: QKV 48 rows / 2 a line, Wo 16 / 2, W1 32 / 2, W2 16 rows of 4 words (one a line).
GEMV_LINES = 24 + 8 + 16 + 16
C = DEV.core.cols


def _words(values, bits: int, cols: int = C) -> list[int]:
    """Group values into store words of ``cols`` two's complement fields of ``bits`` bits."""
    v = [int(x) & ((1 << bits) - 1) for x in values]
    return [sum(f << (bits * i) for i, f in enumerate(v[j:j + cols]))
            for j in range(0, len(v), cols)]


def _unwords(words, t: int, d: int, cols: int = C) -> np.ndarray:
    out = []
    for w in words:
        for i in range(cols):
            f = (w >> (16 * i)) & 0xFFFF
            out.append(f - (1 << 16) if f & 0x8000 else f)
    return np.asarray(out, np.int64).reshape(t, d)


def _lane_words(data: bytes, dev: DeviceConfig = DEV) -> list[int]:
    n = dev.word_bytes
    return [int.from_bytes(data[i:i + n], "little") for i in range(0, len(data), n)]


def _logits(beats, t: int, n: int) -> np.ndarray:
    """The (t, n) integers of result beats (one per token per tile of ``cols`` channels)."""
    tiles = -(-n // C)
    logits = np.zeros((t, tiles * C), np.int64)
    for b, w in enumerate(beats):
        tile, tok = divmod(b, t)
        for c in range(C):
            f = (w >> (16 * c)) & 0xFFFF
            logits[tok, tile * C + c] = f - (1 << 16) if f & 0x8000 else f
    return logits[:, :n]


class Bench:
    """The datapath with async helpers to fill stores, start a LAYER and read stores."""

    def __init__(self, dev: DeviceConfig = DEV):
        self.dev = dev
        self.dut = Datapath(dev)

    async def write(self, ctx, store: str, base: int, words) -> None:
        d = self.dut
        for i, w in enumerate(words):
            ctx.set(d.st_waddr, base + i)
            ctx.set(d.st_wdata, int(w))
            ctx.set(getattr(d, f"{store}_wen"), 1)
            await ctx.tick()
        ctx.set(getattr(d, f"{store}_wen"), 0)

    async def load_layer(self, ctx, p, *, w_base=0, th_base=0, p_base=0) -> None:
        dev, cols = self.dev, self.dev.core.cols
        await self.write(ctx, "weight", w_base, _lane_words(layer_weights(dev, p), dev))
        await self.write(ctx, "thresh", th_base,
                         [int(v) & ((1 << dev.core.threshold_width) - 1)
                          for v in layer_thresholds(dev, p)])
        await self.write(ctx, "param", p_base,
                         _words(layer_param_values(dev, p), PARAM_BITS, cols))

    async def layer(self, ctx, x, *, res_base=0, flags=0, slot=0, f=24, r=4, n=0,
                    w_base=0, th_base=0, p_base=0):
        d = self.dut
        await self.write(ctx, "resid", res_base, _words(x.reshape(-1), 16, self.dev.core.cols))
        ctx.set(d.layer_params, {"flags": flags, "slot": slot, "shift": r, "t": x.shape[0],
                                 "f": f, "n": n, "res_base": res_base, "w_base": w_base,
                                 "th_base": th_base, "p_base": p_base})
        ctx.set(d.layer_start, 1)
        await ctx.tick()
        ctx.set(d.layer_start, 0)
        status, self.active, self.cycles, self.beats = await ctx.tick().sample(
            d.layer_status, d.layer_active, d.layer_cycles, d.layer_beats).until(d.layer_done)
        return Status(status)

    async def read(self, ctx, store: str, base: int, count: int) -> list[int]:
        """Words ``base .. base + count - 1`` of the residual (``resid``) or result (``res``)
        store, through the datapath's read port."""
        d, out = self.dut, []
        for a in range(base, base + count):
            ctx.set(getattr(d, f"{store}_raddr"), a)
            ctx.set(getattr(d, f"{store}_ren"), 1)
            await ctx.tick()
            out.append(ctx.get(getattr(d, f"{store}_rdata")))
        ctx.set(getattr(d, f"{store}_ren"), 0)
        return out

    def run(self, body) -> None:
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(body)
        sim.run()


def _layer(seed: int, d_ff: int = 24):
    rng = np.random.default_rng(seed)
    return rng, random_layer(rng, d_model=16, heads=2, d_ff=d_ff, r=3)


@pytest.mark.parametrize("t", [1, 5, 8])
def test_prefill_equals_golden(t):
    rng, p = _layer(t)
    x = random_activations(rng, t, 16)
    want = golden.layer(x, p)
    bench = Bench()
    got = {}

    async def body(ctx):
        await bench.load_layer(ctx, p, w_base=7, th_base=3, p_base=5)
        got["status"] = await bench.layer(ctx, x, res_base=2, flags=LAYER_FRESH, slot=1, r=3,
                                          w_base=7, th_base=3, p_base=5)
        got["x2"] = _unwords(await bench.read(ctx, "resid", 2, t * 16 // C), t, 16)

    bench.run(body)
    assert got["status"] == Status.OK
    assert np.array_equal(got["x2"], want)


@pytest.mark.parametrize("d_ff", [32, 24])   # decode on the GEMV unit; F = 24 on the core
def test_decode_equals_prefill_and_cache_full(d_ff):
    rng, p = _layer(11, d_ff)
    t = 6
    x = random_activations(rng, t, 16)
    want = golden.layer(x, p)
    bench = Bench()
    got = {"rows": []}

    async def body(ctx):
        await bench.load_layer(ctx, p)
        # Prefill of two tokens, then decode one at a time on the cache.
        st = await bench.layer(ctx, x[:2], flags=LAYER_FRESH, r=3, f=d_ff)
        got["rows"].append((st, _unwords(await bench.read(ctx, "resid", 0, 2 * 16 // C), 2, 16)))
        for i in range(2, t):
            st = await bench.layer(ctx, x[i:i + 1], r=3, f=d_ff)
            got["active"] = bench.active
            got["rows"].append((st, _unwords(await bench.read(ctx, "resid", 0, 16 // C), 1, 16)))
        # 6 cached tokens + 7 > capacity 12: refused, and the cache is unchanged.
        got["full"] = await bench.layer(ctx, random_activations(rng, 7, 16), r=3, f=d_ff)
        st = await bench.layer(ctx, x[:1], flags=LAYER_FRESH, r=3, f=d_ff)
        got["again"] = (st, _unwords(await bench.read(ctx, "resid", 0, 16 // C), 1, 16))

    bench.run(body)
    assert all(st == Status.OK for st, _ in got["rows"])
    assert np.array_equal(np.concatenate([r for _, r in got["rows"]]), want)
    assert got["full"] == Status.CACHE_FULL
    assert got["again"][0] == Status.OK and np.array_equal(got["again"][1], want[:1])
    assert (got["active"] == GEMV_LINES) == (d_ff == 32)


def test_head_equals_golden():
    rng = np.random.default_rng(3)
    m = random_model(rng, vocab=11, d_model=16, heads=2, d_ff=24, n_layers=1)
    x = random_activations(rng, 3, 16)
    want = golden.binary_linear(pack_bits(x.astype(np.int64) >= m.th_out), pack_bits(m.Wout), 16)
    bench = Bench()
    got = {}

    async def body(ctx):
        await bench.write(ctx, "weight", 4, _lane_words(head_weights(DEV, m.Wout)))
        await bench.write(ctx, "param", 9, _words(head_param_values(DEV, m.th_out), PARAM_BITS))
        got["status"] = await bench.layer(ctx, x, flags=LAYER_HEAD, n=11, w_base=4, p_base=9)
        got["beats"] = await bench.read(ctx, "res", 0, 3 * 6)

    bench.run(body)
    assert got["status"] == Status.OK
    assert np.array_equal(_logits(got["beats"], 3, 11), want)


def _command(fields: dict) -> tuple[int, int]:
    """One LAYER command with nothing loaded (t = 2, f = 24, the rest 0 but ``fields``): its
    status and cycles."""
    bench = Bench()
    got = {}
    d = bench.dut
    args = {"flags": 0, "slot": 0, "shift": 0, "t": 2, "f": 24, "n": 0, "res_base": 0,
            "w_base": 0, "th_base": 0, "p_base": 0} | fields

    async def body(ctx):
        ctx.set(d.layer_params, args)
        ctx.set(d.layer_start, 1)
        await ctx.tick()
        ctx.set(d.layer_start, 0)
        status, cycles = await ctx.tick().sample(d.layer_status, d.layer_cycles).until(
            d.layer_done)
        got["status"], got["cycles"] = status, cycles

    bench.run(body)
    return got["status"], got["cycles"]


@pytest.mark.parametrize("fields", [
    {"t": 0}, {"t": 9}, {"f": 0}, {"f": 33}, {"slot": 2}, {"shift": 16}, {"flags": 4},
    {"res_base": 76}, {"w_base": 1000}, {"th_base": 200}, {"p_base": 128 - param_words_per_layer(
        DEV) + 1},
])
def test_bad_commands_are_refused(fields):
    status, cycles = _command(fields)
    assert status == Status.OUT_OF_RANGE
    assert cycles < 10          # nothing ran


@pytest.mark.parametrize("over", [0, 1])
def test_the_weight_store_bound_is_exact(over):
    """A layer whose matrices end exactly at the weight store's end runs; a word further is
    refused before anything runs."""
    status, _ = _command({"w_base": DEV.weight_words - layer_weight_words(DEV, 24) + over})
    assert status == (Status.OUT_OF_RANGE if over else Status.OK)


# ---------------------------------------------------------------- multi-bit activations

DEV_MB = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=128, max_t=8, max_n=64, max_bits=4),
    act_words=1024, weight_words=1024, thresh_words=16, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=1152, max_bits=4))
D = 16


def _flags(bits: int, extra: int = 0) -> int:
    return extra | (bits - 1) << LAYER_BITS_SHIFT


@pytest.mark.parametrize("bits, t", [(1, 3), (2, 5), (3, 4), (4, 6)])
def test_prefill_equals_golden_multi_bit(bits, t):
    rng = np.random.default_rng(bits * 10 + t)
    p = random_layer(rng, d_model=D, heads=2, d_ff=24, r=3, bits=bits)
    x = random_activations(rng, t, D)
    want = golden.layer(x, p)
    bench = Bench(DEV_MB)
    got = {}

    async def body(ctx):
        await bench.load_layer(ctx, p, w_base=8, p_base=8)
        got["status"] = await bench.layer(ctx, x, res_base=2, flags=_flags(bits, LAYER_FRESH),
                                          slot=1, r=3, w_base=8, p_base=8)
        got["x2"] = _unwords(await bench.read(ctx, "resid", 2, t * D // C), t, D)

    bench.run(body)
    assert got["status"] == Status.OK
    assert np.array_equal(got["x2"], want)


@pytest.mark.parametrize("bits, d_ff", [(2, 32), (4, 32), (3, 24)])  # GEMV; F = 24: the array
def test_decode_equals_prefill_multi_bit(bits, d_ff):
    rng = np.random.default_rng(bits + d_ff)
    p = random_layer(rng, d_model=D, heads=2, d_ff=d_ff, r=3, bits=bits)
    t = 5
    x = random_activations(rng, t, D)
    want = golden.layer(x, p)
    bench = Bench(DEV_MB)
    rows = []

    async def body(ctx):
        await bench.load_layer(ctx, p)
        st = await bench.layer(ctx, x[:2], flags=_flags(bits, LAYER_FRESH), r=3, f=d_ff)
        rows.append((st, _unwords(await bench.read(ctx, "resid", 0, 2 * D // C), 2, D)))
        for i in range(2, t):
            st = await bench.layer(ctx, x[i:i + 1], flags=_flags(bits), r=3, f=d_ff)
            rows.append((st, _unwords(await bench.read(ctx, "resid", 0, D // C), 1, D)))

    bench.run(body)
    assert all(st == Status.OK for st, _ in rows)
    assert np.array_equal(np.concatenate([r for _, r in rows]), want)


@pytest.mark.parametrize("bits", [1, 3])
def test_head_equals_golden_multi_bit(bits):
    rng = np.random.default_rng(bits)
    m = random_model(rng, vocab=11, d_model=D, heads=2, d_ff=24, n_layers=1, head_bits=bits)
    x = random_activations(rng, 3, D)
    want = golden.linear(golden.multi_threshold(x.astype(np.int64), m.th_out), m.Wout,
                         bits=bits)
    bench = Bench(DEV_MB)
    got = {}

    async def body(ctx):
        await bench.write(ctx, "weight", 4, _lane_words(head_weights(DEV_MB, m.Wout), DEV_MB))
        await bench.write(ctx, "param", 12,
                          _words(head_param_values(DEV_MB, m.th_out), PARAM_BITS, C))
        got["status"] = await bench.layer(ctx, x, flags=_flags(bits, LAYER_HEAD), n=11,
                                          w_base=4, p_base=12)
        got["beats"] = await bench.read(ctx, "res", 0, 3 * 6)

    bench.run(body)
    assert got["status"] == Status.OK
    assert np.array_equal(_logits(got["beats"], 3, 11), want)
    assert head_param_words(DEV_MB) == D // C * 16      # 15 thresholds a group, in runs of 4


def test_bits_beyond_the_engine_are_refused_multi_bit():
    dev = DeviceConfig(
        core=CoreConfig(rows=2, cols=2, lanes=8, max_k=64, max_t=8, max_n=64, max_bits=2),
        act_words=512, weight_words=1024, thresh_words=16, result_beats=64, weight_banks=4,
        layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                          res_words=80, param_words=512, max_bits=2))
    bench = Bench(dev)
    got = {}

    async def body(ctx):
        x = np.zeros((2, D), np.int16)
        got["status"] = await bench.layer(ctx, x, flags=_flags(3, LAYER_FRESH), r=3)

    bench.run(body)
    assert got["status"] == Status.OUT_OF_RANGE


@pytest.mark.parametrize("p_base, head", [(2, 0), (6, 0), (10, LAYER_HEAD), (1, LAYER_HEAD)])
def test_parameters_off_a_run_are_refused_multi_bit(p_base, head):
    """A ``p_base`` that is not a multiple of the parameter store's runs (4 words here), a
    layer's or the head's: the multi-threshold unit would read another group's thresholds."""
    bench = Bench(DEV_MB)
    got = {}

    async def body(ctx):
        x = np.zeros((2, D), np.int16)
        got["status"] = await bench.layer(ctx, x, flags=_flags(2, LAYER_FRESH | head), r=3,
                                          n=11 if head else 0, p_base=p_base)

    bench.run(body)
    assert got["status"] == Status.OUT_OF_RANGE


# ---------------------------------------------------------------- ternary weights

DEV_T = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=128, max_t=8, max_n=64, max_bits=2),
    act_words=1024, weight_words=2048, thresh_words=16, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=1024, max_bits=2,
                      weight_kinds=("binary", "ternary")))


@pytest.mark.parametrize("bits, d_ff", [(1, 20), (2, 20), (2, 32)])   # F = 20: middle padding
def test_ternary_prefill_and_decode_equal_golden(bits, d_ff):
    rng = np.random.default_rng(bits * 3 + d_ff)
    p = random_layer(rng, d_model=D, heads=2, d_ff=d_ff, r=3, bits=bits, weights="ternary")
    t = 5
    x = random_activations(rng, t, D)
    want = golden.layer(x, p)
    bench = Bench(DEV_T)
    rows = []
    flags = _flags(bits) | LAYER_TERNARY

    async def body(ctx):
        await bench.load_layer(ctx, p, w_base=8, p_base=4)
        st = await bench.layer(ctx, x[:3], flags=flags | LAYER_FRESH, r=3, f=d_ff, w_base=8,
                               p_base=4)
        rows.append((st, _unwords(await bench.read(ctx, "resid", 0, 3 * D // C), 3, D)))
        for i in range(3, t):
            st = await bench.layer(ctx, x[i:i + 1], flags=flags, r=3, f=d_ff, w_base=8,
                                   p_base=4)
            rows.append((st, _unwords(await bench.read(ctx, "resid", 0, D // C), 1, D)))

    bench.run(body)
    assert all(st == Status.OK for st, _ in rows)
    assert np.array_equal(np.concatenate([r for _, r in rows]), want)


def test_ternary_head_equals_golden():
    rng = np.random.default_rng(4)
    m = random_model(rng, vocab=11, d_model=D, heads=2, d_ff=24, n_layers=1, head_bits=2,
                     head_weights="ternary")
    x = random_activations(rng, 3, D)
    want = golden.linear(golden.multi_threshold(x.astype(np.int64), m.th_out), m.Wout, bits=2,
                         weights="ternary")
    bench = Bench(DEV_T)
    got = {}

    async def body(ctx):
        await bench.write(ctx, "weight", 4,
                          _lane_words(head_weights(DEV_T, m.Wout, "ternary"), DEV_T))
        await bench.write(ctx, "param", 12,
                          _words(head_param_values(DEV_T, m.th_out), PARAM_BITS, C))
        got["status"] = await bench.layer(ctx, x, flags=_flags(2, LAYER_HEAD) | LAYER_TERNARY,
                                          n=11, w_base=4, p_base=12)
        got["beats"] = await bench.read(ctx, "res", 0, 3 * 6)

    bench.run(body)
    assert got["status"] == Status.OK
    assert np.array_equal(_logits(got["beats"], 3, 11), 2 * want)   # the host halves them


@pytest.mark.parametrize("dev, bits, weights", [(DEV, 1, "binary"), (DEV_MB, 1, "binary"),
                                                (DEV_MB, 3, "binary"), (DEV_MB, 4, "binary"),
                                                (DEV_T, 2, "ternary")])
def test_one_token_head_runs_on_the_gemv_unit(dev, bits, weights):
    """A one-token LM head whose weights start on a line runs on the GEMV unit and writes the
    result store itself: the logits equal golden's and the runner's (the same head a word off
    a line), the answer counts its beats, and it takes fewer cycles."""
    rng = np.random.default_rng(bits)
    vocab = 11
    m = random_model(rng, vocab=vocab, d_model=D, heads=2, d_ff=24, n_layers=1,
                     head_bits=bits, head_weights=weights)
    x = random_activations(rng, 1, D)
    levels = (x.astype(np.int64) >= m.th_out).astype(np.int64) if dev is DEV else \
        golden.multi_threshold(x.astype(np.int64), m.th_out)
    want = golden.linear(levels, m.Wout, bits=bits, weights=weights)
    tiles = -(-vocab // C)
    flags = LAYER_HEAD | (0 if dev is DEV else _flags(bits)) | \
        (LAYER_TERNARY if weights == "ternary" else 0)
    p_base = 9 if dev is DEV else 12
    params = head_param_values(dev, m.th_out)
    bench = Bench(dev)
    got = {}

    async def body(ctx):
        # On a line (P = 4): the GEMV unit, first, into a result store that holds nothing yet;
        # a word off a line: the runner.
        for w_base in (4, 5):
            await bench.write(ctx, "weight", w_base,
                              _lane_words(head_weights(dev, m.Wout, weights), dev))
            await bench.write(ctx, "param", p_base, _words(params, PARAM_BITS))
            status = await bench.layer(ctx, x, flags=flags, n=vocab, w_base=w_base,
                                       p_base=p_base)
            got[w_base] = (status, bench.cycles, bench.beats,
                           await bench.read(ctx, "res", 0, tiles))

    bench.run(body)
    halve = 2 if weights == "ternary" else 1          # (the host halves ternary sums)
    for w_base in (4, 5):
        status, _, beats, words = got[w_base]
        assert status == Status.OK
        assert beats == tiles
        assert np.array_equal(_logits(words, 1, vocab), halve * want)
    assert got[4][1] < got[5][1]
