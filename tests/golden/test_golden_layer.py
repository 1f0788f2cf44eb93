"""The golden model equals the +-1 integer-matrix reference, bit for bit."""

import numpy as np
import pytest
import reference

from onebit.host import (
    LayerParams,
    golden,
    pack_bits,
    random_activations,
    random_layer,
    random_model,
)

SHAPES = [  # (T, D, H, F): D and K that are not multiples of 32 included
    (1, 8, 1, 8), (5, 12, 3, 20), (7, 33, 3, 65), (16, 64, 2, 128), (33, 40, 4, 96),
    (9, 96, 6, 31), (40, 100, 5, 70),
]


def as_dict(p: LayerParams) -> dict:
    d = {k: np.asarray(v, dtype=np.int64) for k, v in p.to_dict().items()}
    d["r"], d["heads"] = p.r, p.heads
    return d


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_layer_matches_reference(shape, seed):
    t, d, h, f = shape
    rng = np.random.default_rng(seed * 1000 + d)
    p = random_layer(rng, d_model=d, heads=h, d_ff=f, r=int(rng.integers(0, 16)))
    x = random_activations(rng, t, d, spread=int(rng.choice([64, 4000, 32767])))
    y = golden.layer(x, p)
    assert y.dtype == np.int16 and y.shape == (t, d)
    assert (y == reference.layer(x, as_dict(p))).all()


def test_saturation_both_ends():
    rng = np.random.default_rng(7)
    p = random_layer(rng, d_model=32, heads=2, d_ff=32, r=0)
    x = np.full((4, 32), 32000, np.int16)
    x[2:] = -32000
    y = golden.layer(x, p)
    assert (y == reference.layer(x, as_dict(p))).all()
    assert y.max() == 32767 and y.min() == -32768


@pytest.mark.parametrize("shape", SHAPES)
def test_prefill_equals_decode(shape):
    t, d, h, f = shape
    rng = np.random.default_rng(d)
    p = random_layer(rng, d_model=d, heads=h, d_ff=f)
    x = random_activations(rng, t, d)
    assert (golden.layer(x, p) == golden.layer_decode(x, p)).all()
    # Prefill a prefix, then decode the rest with the same cache.
    cache = golden.KVCache(h, d // h, t)
    split = t // 2
    head = golden.layer_step(x[:split], p, cache)
    tail = [golden.layer_step(x[i:i + 1], p, cache) for i in range(split, t)]
    assert (np.concatenate([head, *tail]) == golden.layer(x, p)).all()


@pytest.mark.parametrize("k", [1, 7, 31, 32, 33, 63, 64, 65, 100, 2048])
def test_binary_linear_and_padding(k):
    rng = np.random.default_rng(k)
    x = rng.integers(0, 2, (6, k), dtype=np.uint8)
    w = rng.integers(0, 2, (9, k), dtype=np.uint8)
    y = golden.binary_linear(pack_bits(x), pack_bits(w), k)
    assert (y == reference.linear(x, w)).all()
    t = rng.integers(-k, k + 2, 9)
    bits = golden.binary_linear(pack_bits(x), pack_bits(w), k, t)
    assert (bits == (reference.linear(x, w) >= t)).all()
    # Padding never changes a result: append zeros to both and compare with a wider K.
    pad = 32 - k % 32 if k % 32 else 32
    xw = np.concatenate([x, np.zeros((6, pad), np.uint8)], axis=1)
    ww = np.concatenate([w, np.zeros((9, pad), np.uint8)], axis=1)
    # Zero padding in {0,1} is -1 * -1 = +1 per element: dot over K+pad is dot over K plus pad.
    assert (golden.binary_linear(pack_bits(xw), pack_bits(ww), k + pad) == y + pad).all()


def test_mdot_matches_definition():
    rng = np.random.default_rng(3)
    p = rng.integers(0, 2, (5, 70), dtype=np.uint8)
    w = rng.integers(0, 2, (5, 70), dtype=np.uint8)
    expect = (p.astype(np.int64) * reference.pm(w)).sum(axis=1)
    assert (golden.mdot(pack_bits(p), pack_bits(w)) == expect).all()


def test_model_logits_and_generate():
    rng = np.random.default_rng(11)
    m = random_model(rng, vocab=37, d_model=48, heads=3, d_ff=80, n_layers=2)
    prompt = rng.integers(0, 37, 6)
    md = {"E": m.E, "th_out": m.th_out, "Wout": m.Wout,
          "layers": [as_dict(p) for p in m.layers]}
    assert (golden.model_logits(prompt, m) == reference.model_logits(prompt, md)).all()
    out = golden.generate(prompt, 5, m)
    seq = list(prompt)
    for tok in out:   # greedy: each generated token is the argmax of the full-sequence logits
        logits = reference.model_logits(np.array(seq), md)[-1]
        assert tok == int(np.flatnonzero(logits == logits.max())[0])
        seq.append(int(tok))


def test_argmax_tie_takes_lowest_index():
    rng = np.random.default_rng(5)
    m = random_model(rng, vocab=8, d_model=16, heads=2, d_ff=16, n_layers=1)
    wout = np.repeat(m.Wout[:1], 8, axis=0)   # every token has the same logit
    m2 = type(m)(E=m.E, layers=m.layers, th_out=m.th_out, Wout=wout)
    assert golden.generate(np.array([1, 2]), 3, m2).tolist() == [0, 0, 0]


def test_layer_input_errors():
    p = random_layer(np.random.default_rng(0), d_model=16, heads=2, d_ff=16)
    with pytest.raises(ValueError, match=r"x must have shape \(T, 16\), not \(3, 15\)"):
        golden.layer(np.zeros((3, 15), np.int16), p)
    with pytest.raises(TypeError, match="x must be an int16 array, not dtype float64"):
        golden.layer(np.zeros((3, 16)), p)
    with pytest.raises(ValueError, match="outside int16"):
        golden.layer(np.full((3, 16), 40000), p)
    cache = golden.KVCache(2, 8, 2)
    golden.layer_step(np.zeros((2, 16), np.int16), p, cache)
    with pytest.raises(OverflowError, match="KV cache holds 2 tokens; 2 are in it and 1 more"):
        golden.layer_step(np.zeros((1, 16), np.int16), p, cache)
    m = random_model(np.random.default_rng(0), vocab=5, d_model=16, heads=2, d_ff=16,
                     n_layers=1)
    with pytest.raises(ValueError, match=r"tokens must be in \[0, 4\]"):
        golden.generate(np.array([0, 5]), 1, m)
