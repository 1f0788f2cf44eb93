"""The whole layer through the host API and the link, on the gateware: ``layer`` equals
``golden.layer`` (also beyond ``max_t`` tokens, in blocks), ``decode`` one token at a time
equals prefill, a two-layer model generates golden's tokens, ``logits`` equals golden's head;
bad calls are refused with messages that name the problem; on Icarus and Verilator with random
stalls on the link's streams."""

import numpy as np
import pytest

from onebit.host import Accelerator, golden
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.host.packing import pack_bits
from onebit.host.random_model import random_activations, random_layer, random_model

# The CI configuration: D = 64, H = 2, F = 128, T = 16 (two blocks of max_t = 8).
LAYER_DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=16, max_k=128, max_t=8, max_n=192),
    frame_bytes=1024, act_words=512, weight_words=8192, thresh_words=1024, result_beats=64,
    weight_banks=4, layer=LayerConfig(d_model=64, heads=2, max_ff=128, kv_capacity=32, kv_slots=2,
                      res_words=256, param_words=512))


# Icarus in the default run; Verilator (a long build) with `-m slow`. (Amaranth's simulator
# runs a layer through the same driver in tests/hdl/layer/test_layer_profile.py.)
@pytest.fixture(scope="module", params=["icarus",
                                        pytest.param("verilator", marks=pytest.mark.slow)])
def acc(request):
    with Accelerator.open("sim", simulator=request.param, config=LAYER_DEV, timeout=600) as a:
        yield a


@pytest.mark.slow
def test_layer_prefill_and_decode_equal_golden(acc):
    rng = np.random.default_rng(5)
    p = random_layer(rng, d_model=64, heads=2, d_ff=128, r=5)
    x = random_activations(rng, 16, 64)
    want = golden.layer(x, p)
    acc.load_layer(p, 1)
    assert np.array_equal(acc.layer(x, 1), want)               # 16 > max_t: two blocks
    first = acc.layer(x[:12], 1)
    rows = [acc.decode(x[i], 1) for i in range(12, 16)]
    assert np.array_equal(np.concatenate([first, np.stack(rows)]), want)
    assert acc.stats.commands >= 6 and 0 < acc.stats.utilization <= 1


def test_model_generates_golden_tokens(acc):
    rng = np.random.default_rng(8)
    m = random_model(rng, vocab=13, d_model=64, heads=2, d_ff=96, n_layers=2)
    prompt = rng.integers(0, 13, size=5)
    acc.load_model(m)
    assert np.array_equal(acc.generate(prompt, 4), golden.generate(prompt, 4, m))
    x = random_activations(rng, 3, 64)
    head = golden.binary_linear(pack_bits(x.astype(np.int64) >= m.th_out), pack_bits(m.Wout), 64)
    assert np.array_equal(acc.logits(x), head)


def test_layer_calls_are_checked(acc):
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="built for D = 64, H = 2; this layer has D = 32"):
        acc.load_layer(random_layer(rng, d_model=32, heads=2, d_ff=16))
    with pytest.raises(ValueError, match="F = 136 exceeds the device's max_ff = 128"):
        acc.load_layer(random_layer(rng, d_model=64, heads=2, d_ff=136))
    with pytest.raises(ValueError, match="layer index must be in 0..1"):
        acc.load_layer(random_layer(rng, d_model=64, heads=2, d_ff=16), 2)
    p = random_layer(rng, d_model=64, heads=2, d_ff=16)
    acc.load_layer(p, 0)
    with pytest.raises(ValueError, match="exceed the KV cache's capacity of 32"):
        acc.layer(random_activations(rng, 33, 64), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(T, 64\)"):
        acc.layer(np.zeros((2, 63), np.int16), 0)
    acc.reset_cache()
    x = random_activations(rng, 1, 64)
    assert np.array_equal(acc.decode(x[0], 0), golden.layer(x, p)[0])   # empty cache: pos 0
