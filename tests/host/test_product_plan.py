"""How products are cut to the device's stores (``plan_product``): every tile fits, weights cross
the link as few times as the stores allow (once when they fit), and on the simulated device a
many-token product sends each weight row once and each level of a multi-threshold is applied by
the device itself (the thermometer lowering), exact against the golden model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onebit.host import Accelerator, DeviceConfig, golden
from onebit.host.core_config import CoreConfig
from onebit.host.product_plan import plan_product
from onebit.host.protocol import Opcode
from onebit.host.thermometer import lower_inputs, lower_weights, lowered_k


@st.composite
def devices(draw):
    lanes = draw(st.sampled_from([8, 16, 32]))
    max_k = draw(st.integers(1, 300))
    core = CoreConfig(rows=draw(st.integers(1, 4)), cols=draw(st.integers(1, 4)), lanes=lanes,
                      max_k=max_k, max_t=draw(st.integers(1, 40)),
                      max_n=draw(st.integers(1, 200)))
    kw = core.max_chunks
    return DeviceConfig(core=core, frame_bytes=lanes, act_words=kw * draw(st.integers(1, 50)),
                        weight_words=kw * draw(st.integers(1, 50)),
                        thresh_words=draw(st.integers(15, 200)),
                        result_beats=draw(st.integers(40, 300)))


@settings(max_examples=300, deadline=None)
@given(devices(), st.integers(1, 500), st.integers(1, 500), st.data())
def test_every_tile_fits_and_weights_move_least(dev, t, n, data):
    c = dev.core
    k = data.draw(st.integers(1, c.max_k))
    levels = data.draw(st.sampled_from([0, 1, 3, 15]))
    p = plan_product(dev, t, n, k, levels)
    kw = -(-k // c.lanes)
    assert 1 <= p.t_block <= min(t, c.max_t) and p.t_block * kw <= dev.act_words
    assert 1 <= p.n_block <= min(n, c.max_n)
    assert p.group * kw <= dev.weight_words or p.group == p.n_block
    assert p.n_block * kw <= dev.weight_words
    if levels:
        assert p.group * levels <= dev.thresh_words
        assert dev.result_beats_for(p.t_block, p.n_block, True) <= dev.result_beats
    else:
        assert dev.result_beats_for(p.t_block, p.n_block, False) <= dev.result_beats
    assert p.group == n or p.group % p.n_block == 0
    groups, t_blocks = -(-n // p.group), -(-t // p.t_block)
    assert p.link_words == min(n * kw + groups * t * kw, t * kw + t_blocks * n * kw)
    if p.group == n:                       # the weights fit: everything crosses once
        assert p.link_words == (t + n) * kw


DEV = DeviceConfig(core=CoreConfig(rows=2, cols=4, lanes=8, max_k=64, max_t=4, max_n=32),
                   frame_bytes=32, act_words=64, weight_words=256, thresh_words=96,
                   result_beats=64)


@pytest.fixture(scope="module")
def acc():
    with Accelerator.open("sim", simulator="amaranth", config=DEV, timeout=120) as a:
        yield a


@pytest.fixture
def loads(acc, monkeypatch):
    """The bytes of each kind that the real driver loads, recorded on their way to the device."""
    sent = {}
    real = acc._load

    def record(opcode, data, base=0):
        sent[opcode] = sent.get(opcode, 0) + len(data)
        return real(opcode, data, base)

    monkeypatch.setattr(acc, "_load", record)
    return sent


def test_weights_that_fit_cross_the_link_once(acc, loads):
    rng = np.random.default_rng(1)
    x, w = rng.integers(0, 2, (37, 50)), rng.integers(0, 2, (30, 50))   # 10 token blocks
    np.testing.assert_array_equal(acc.linear(x, w), golden.linear(x, w))
    assert loads[Opcode.LOAD_WEIGHTS] == 30 * 7          # 7 words of 8 bits a row, once
    assert loads[Opcode.LOAD_ACTIVATIONS] == 37 * 7


def test_weights_beyond_the_store_are_loaded_once_per_token_pass(acc, loads):
    rng = np.random.default_rng(2)
    x, w = rng.integers(0, 2, (9, 64)), rng.integers(0, 2, (70, 64))     # 560 words > 256
    np.testing.assert_array_equal(acc.linear(x, w), golden.linear(x, w))
    p = plan_product(DEV, 9, 70, 64, 0)
    assert loads[Opcode.LOAD_WEIGHTS] + loads[Opcode.LOAD_ACTIVATIONS] == p.link_words
    assert p.link_words < 9 * 8 + 3 * 70 * 8              # better than weights per token block


@pytest.mark.parametrize("bits,weights,levels", [
    (1, "binary", 3), (2, "binary", 3), (2, "ternary", 1), (3, "binary", 7),
    pytest.param(1, "ternary", 15, marks=pytest.mark.slow)])
def test_the_device_applies_every_threshold_level(acc, loads, bits, weights, levels):
    rng = np.random.default_rng(bits * 100 + levels)
    k = 64 // lowered_k(1, bits, weights)                 # the lowering fills max_k
    x = rng.integers(0, 1 << bits, (11, k))
    w = rng.integers(-1, 2, (19, k)) if weights == "ternary" else rng.integers(0, 2, (19, k))
    span = ((1 << bits) - 1) * k
    thr = np.sort(rng.integers(-span - 3, span + 4, (19, levels)), axis=1)
    thr[0], thr[1] = -(1 << 40), 1 << 40                  # every level met, none met
    got = acc.linear(x, w, thr, bits=bits, weights=weights)
    np.testing.assert_array_equal(got, golden.linear(x, w, thr, bits=bits, weights=weights))
    kw = -(-lowered_k(k, bits, weights) // 8)
    assert loads[Opcode.LOAD_WEIGHTS] == 19 * kw          # the lowered rows, once
    assert loads[Opcode.LOAD_THRESHOLDS] == 19 * levels * 2


def test_the_lowering_is_the_product():
    """The identity itself, on random levels and weights of every precision (host only)."""
    rng = np.random.default_rng(5)
    for bits in range(1, 5):
        for kind in ("binary", "ternary"):
            q = rng.integers(0, 1 << bits, (6, 23))
            w = rng.integers(-1, 2, (5, 23)) if kind == "ternary" else rng.integers(0, 2, (5, 23))
            xl, wl = lower_inputs(q, bits, kind), lower_weights(w, bits, kind)
            assert xl.shape[1] == wl.shape[1] == lowered_k(23, bits, kind)
            dot = (2 * xl.astype(np.int64) - 1) @ (2 * wl.astype(np.int64) - 1).T
            scale = 2 if kind == "ternary" else 1
            np.testing.assert_array_equal(dot, scale * golden.linear(q, w, bits=bits,
                                                                     weights=kind))
