"""The whole layer through the host API and the link, on the gateware: ``layer`` equals
``golden.layer`` (also beyond ``max_t`` tokens, in blocks), ``decode`` one token at a time
equals prefill, a two-layer model generates golden's tokens, ``logits`` equals golden's head;
bad calls are refused with messages that name the problem. Amaranth's simulator here; the
cocotb end-to-end test runs the same driver on Icarus and Verilator with random stalls."""

import numpy as np
import pytest

from onebit.host import Accelerator, golden
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.host.packing import pack_bits
from onebit.host.random_model import random_activations, random_layer, random_model

LAYER_DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=16, max_k=64, max_t=8, max_n=96),
    frame_bytes=256, act_words=256, weight_words=2048, thresh_words=512, result_beats=64,
    layer=LayerConfig(d_model=32, heads=2, max_ff=64, kv_capacity=24, kv_slots=2,
                      res_words=128, param_words=256))


@pytest.fixture(scope="module")
def acc():
    with Accelerator.open("sim", config=LAYER_DEV, timeout=600) as a:
        yield a


def test_layer_prefill_and_decode_equal_golden(acc):
    rng = np.random.default_rng(5)
    p = random_layer(rng, d_model=32, heads=2, d_ff=48, r=5)
    x = random_activations(rng, 11, 32)
    want = golden.layer(x, p)
    acc.load_layer(p, 1)
    assert np.array_equal(acc.layer(x, 1), want)               # 11 > max_t: two blocks
    first = acc.layer(x[:4], 1)
    rows = [acc.decode(x[i], 1) for i in range(4, 7)]
    assert np.array_equal(np.concatenate([first, np.stack(rows)]), want[:7])
    assert acc.stats.commands >= 6 and 0 < acc.stats.utilization <= 1


def test_model_generates_golden_tokens(acc):
    rng = np.random.default_rng(8)
    m = random_model(rng, vocab=13, d_model=32, heads=2, d_ff=64, n_layers=2)
    prompt = rng.integers(0, 13, size=5)
    acc.load_model(m)
    assert np.array_equal(acc.generate(prompt, 4), golden.generate(prompt, 4, m))
    x = random_activations(rng, 3, 32)
    head = golden.binary_linear(pack_bits(x.astype(np.int64) >= m.th_out), pack_bits(m.Wout), 32)
    assert np.array_equal(acc.logits(x), head)


def test_layer_calls_are_checked(acc):
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="built for D = 32, H = 2; this layer has D = 16"):
        acc.load_layer(random_layer(rng, d_model=16, heads=2, d_ff=16))
    with pytest.raises(ValueError, match="F = 80 exceeds the device's max_ff = 64"):
        acc.load_layer(random_layer(rng, d_model=32, heads=2, d_ff=80))
    with pytest.raises(ValueError, match="layer index must be in 0..1"):
        acc.load_layer(random_layer(rng, d_model=32, heads=2, d_ff=16), 2)
    acc.load_layer(random_layer(rng, d_model=32, heads=2, d_ff=16), 0)
    with pytest.raises(ValueError, match="exceed the KV cache's capacity of 24"):
        acc.layer(random_activations(rng, 25, 32), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(T, 32\)"):
        acc.layer(np.zeros((2, 31), np.int16), 0)
    acc.reset_cache()
    acc.decode(random_activations(rng, 1, 32)[0], 0)          # decode on an empty cache: pos 0
