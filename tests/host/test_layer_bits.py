"""The layer engine built for multi-bit activations and ternary weights through the host API
and the link, on the gateware: a hybrid model (a 1-bit binary layer, a 3-bit ternary layer and
a 2-bit ternary head) generates golden's tokens and its logits equal golden's; a 2-bit layer's
prefill (in blocks beyond ``max_t``) and decode equal golden's; IDENTIFY reports the engine's
bits and weight kinds; a layer beyond them is refused with a message. Icarus in the default
run (but the 2-bit layer's, with ``-m slow``), Verilator with ``-m slow``."""

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
