"""The layer engine built for multi-bit activations and ternary weights through the host API
and the link, on the gateware: a hybrid model (a 1-bit binary layer, a 3-bit ternary layer and
a 2-bit ternary head) generates golden's tokens and its logits equal golden's; a 2-bit layer's
prefill (in blocks beyond ``max_t``) and decode equal golden's; IDENTIFY reports the engine's
bits and weight kinds; a layer beyond them is refused with a message. Icarus in the default
run (but the 2-bit layer's, with ``-m slow``), Verilator with ``-m slow``. With ``-m slow`` an
engine of up to 4 bits also runs layers at A = 2 and 4 with binary and ternary weights, prefill
and decode, on Verilator."""

from dataclasses import replace

import numpy as np
import pytest

from onebit.host import Accelerator, golden
from onebit.host.layer_driver import device_for
from onebit.host.random_model import random_activations, random_layer, random_model


def _hybrid_model():
    rng = np.random.default_rng(8)
    m = random_model(rng, vocab=13, d_model=64, heads=2, d_ff=96, n_layers=2, head_bits=2,
                     head_weights="ternary")
    layers = (random_layer(rng, d_model=64, heads=2, d_ff=96, r=4, bits=1),
              random_layer(rng, d_model=64, heads=2, d_ff=96, r=4, bits=3, weights="ternary"))
    return replace(m, layers=layers)


MODEL = _hybrid_model()
DEV = device_for(MODEL, rows=2, cols=2, lanes=16, max_t=8, kv_capacity=16, frame_bytes=1024)


@pytest.fixture(scope="module", params=["icarus",
                                        pytest.param("verilator", marks=pytest.mark.slow)])
def acc(request):
    with Accelerator.open("sim", simulator=request.param, config=DEV, timeout=600) as a:
        yield a


def test_the_device_reports_its_bits(acc):
    assert DEV.layer.max_bits == DEV.core.max_bits == 3
    assert DEV.layer.weight_kinds == ("binary", "ternary")
    assert acc.config == DEV                  # (IDENTIFY)


@pytest.mark.slow
def test_hybrid_model_generates_golden_tokens(acc):
    prompt = np.array([3, 1, 4, 1, 5])
    acc.load_model(MODEL)
    assert np.array_equal(acc.generate(prompt, 4), golden.generate(prompt, 4, MODEL))
    x = random_activations(np.random.default_rng(2), 3, 64)
    want = golden.linear(golden.multi_threshold(x.astype(np.int64), MODEL.th_out), MODEL.Wout,
                         bits=2, weights="ternary")
    assert np.array_equal(acc.logits(x), want)


@pytest.mark.slow                  # (the default run keeps the hybrid model's generate)
def test_two_bit_layer_prefill_and_decode_equal_golden(acc):
    rng = np.random.default_rng(5)
    p = random_layer(rng, d_model=64, heads=2, d_ff=96, r=5, bits=2)
    x = random_activations(rng, 12, 64)
    want = golden.layer(x, p)
    acc.load_layer(p, 1)
    assert np.array_equal(acc.layer(x, 1), want)               # 12 > max_t: two blocks
    first = acc.layer(x[:9], 1)
    rows = [acc.decode(x[i], 1) for i in range(9, 12)]
    assert np.array_equal(np.concatenate([first, np.stack(rows)]), want)
    assert 0 < acc.stats.utilization <= 1


def test_bits_beyond_the_engine_are_refused(acc):
    p = random_layer(np.random.default_rng(1), d_model=64, heads=2, d_ff=96, bits=4)
    with pytest.raises(ValueError, match="activations of up to 3 bits with binary or ternary "
                                         "weights"):
        acc.load_layer(p, 0)


# An engine of up to 4 bits with both weight kinds, small enough for a quick Verilator build:
# the whole layer at A = 2 and 4, binary and ternary, prefill (in blocks) and decode.
@pytest.mark.slow
def test_layers_at_two_and_four_bits_equal_golden():
    rng = np.random.default_rng(11)
    cases = [(a, kind) for a in (2, 4) for kind in ("binary", "ternary")]
    layers = {c: random_layer(rng, d_model=32, heads=2, d_ff=40, r=4, bits=c[0], weights=c[1])
              for c in cases}
    m = random_model(rng, vocab=5, d_model=32, heads=2, d_ff=40, n_layers=1)
    dev = device_for(replace(m, layers=tuple(layers.values())), rows=2, cols=2, lanes=16,
                     max_t=4, kv_capacity=12, frame_bytes=1024)
    assert dev.layer.max_bits == 4 and dev.layer.weight_kinds == ("binary", "ternary")
    x = random_activations(rng, 10, 32)
    with Accelerator.open("sim", simulator="verilator", config=dev, timeout=600) as acc:
        for (a, kind), p in layers.items():
            want = golden.layer(x, p)
            acc.load_layer(p, 0)
            assert np.array_equal(acc.layer(x, 0), want), (a, kind)      # 10 > max_t
            first = acc.layer(x[:7], 0)
            rows = [acc.decode(x[i], 0) for i in range(7, 10)]
            assert np.array_equal(np.concatenate([first, np.stack(rows)]), want), (a, kind)
