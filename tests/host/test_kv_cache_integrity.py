"""No silent wrong answers from the layer engine: sizes the host accepts compute exactly, a slot
that ``load_layer`` fills starts empty, and a device reset that empties the KV caches is noticed
(``decode`` raises ``CacheLostError``, ``generate`` prefills again and stays exact). Amaranth's
simulator, whose transport can pulse the device's reset between commands."""

import numpy as np
import pytest

from onebit.host import Accelerator, golden
from onebit.host.layer_driver import CacheLostError, device_for
from onebit.host.random_model import random_activations, random_layer, random_model
from onebit.sim.link_transport import AmaranthLinkTransport

# d_ff < 2 * d_model: the core's max_k is D, while Q|K|V rows are 3D bits wide.
MODEL = random_model(np.random.default_rng(11), vocab=5, d_model=32, heads=2, d_ff=32,
                     n_layers=2)
DEV = device_for(MODEL, rows=2, cols=2, lanes=16, max_t=4, kv_capacity=8)


@pytest.fixture(scope="module")
def link():
    transport = AmaranthLinkTransport(DEV, timeout_cycles=128)
    with Accelerator(transport, timeout=30) as acc:
        acc.load_model(MODEL)
        yield acc, transport


def test_rows_wider_than_max_k_are_exact(link):
    acc, _ = link
    assert DEV.core.max_k < 2 * MODEL.d_model
    x = MODEL.E[[0, 1, 2, 3]]
    assert np.array_equal(acc.layer(x, 0), golden.layer(x, MODEL.layers[0]))
    prompt = [0, 1, 2, 3, 4]
    assert np.array_equal(acc.generate(prompt, 3), golden.generate(prompt, 3, MODEL))


def test_load_layer_empties_the_slot(link):
    acc, _ = link
    rng = np.random.default_rng(3)
    p1, p2 = (random_layer(rng, d_model=32, heads=2, d_ff=32) for _ in range(2))
    x = random_activations(rng, 4, 32)
    acc.load_layer(p1, 1)
    acc.layer(x[:3], 1)
    acc.load_layer(p2, 1)                        # a new layer: its cache starts empty
    assert np.array_equal(acc.decode(x[3], 1), golden.layer(x[3:4], p2)[0])
    assert np.array_equal(acc.decode(x[0], 1), golden.layer(x[[3, 0]], p2)[1])
    acc.load_layer(MODEL.layers[1], 1)


def test_a_reset_during_decode_is_noticed(link):
    acc, transport = link
    p = MODEL.layers[0]
    x = random_activations(np.random.default_rng(4), 4, 32)
    acc.layer(x[:2], 0)
    assert np.array_equal(acc.decode(x[2], 0), golden.layer(x[:3], p)[2])
    transport.reset_device()                     # empties every KV cache slot
    with pytest.raises(CacheLostError, match="holds 1 tokens after this LAYER, but the host "
                                             "put 4 there"):
        acc.decode(x[3], 0)
    with pytest.raises(CacheLostError, match="prefill again with layer"):
        acc.decode(x[3], 0)                      # still lost: no guess at the position
    assert np.array_equal(acc.layer(x, 0), golden.layer(x, p))


def test_generate_prefills_again_after_a_reset(link):
    acc, transport = link
    prompt = [4, 2, 0]
    want = golden.generate(prompt, 4, MODEL)
    resets = iter([False, True, True, False])   # after tokens 2 and 3

    def reset_now(done, n):
        if next(resets):
            transport.reset_device()
    before = acc.stats.restarts
    assert np.array_equal(acc.generate(prompt, 4, progress=reset_now), want)
    assert acc.stats.restarts - before == 2


@pytest.mark.slow
def test_a_position_table_runs_on_the_device(link):
    """The position table is added on the host (sat16(E[token] + P[t])), prefill and decode
    alike, so a 1-bit binary model with one runs on the device as the golden model says."""
    from onebit.host import ModelParams
    acc, _ = link
    pos = np.random.default_rng(8).integers(-300, 301, size=(6, 32)).astype(np.int16)
    m = ModelParams(E=MODEL.E, layers=MODEL.layers, th_out=MODEL.th_out, Wout=MODEL.Wout, P=pos)
    acc.load_model(m)
    try:
        prompt = [3, 1, 4]
        assert np.array_equal(acc.generate(prompt, 4), golden.generate(prompt, 4, m))
        assert not np.array_equal(golden.generate(prompt, 4, m),
                                  golden.generate(prompt, 4, MODEL))
        with pytest.raises(ValueError, match="need 7 positions; the model's position table "
                                             "has 6"):
            acc.generate(prompt, 5)
    finally:
        acc.load_model(MODEL)
