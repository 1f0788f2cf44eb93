"""Version 2 of the numerics (hybrid precision) on the golden model: A-bit activations by
multi-threshold, ternary weights, the position table, chosen per layer. Every result is compared
exactly with a plain-integer formulation written here from the numerics text (levels as odd
integers, one integer matrix product per step, no packing), for A = 1..4, binary and ternary
weights and widths that are not multiples of 32."""

import numpy as np
import pytest

from onebit.host import LayerParams, ModelFileError, ModelParams, golden
from onebit.host.random_model import random_activations, random_layer, random_model


def hat(q, bits):
    return 2 * np.asarray(q, np.int64) - ((1 << bits) - 1)


def mt(x, t):
    t = np.asarray(t, np.int64)
    if t.ndim == 1:
        t = t[:, None]
    return (np.asarray(x, np.int64)[..., None] >= t).sum(axis=-1)


def prod(q, w, bits):
    """prod(hat(q), w) with w the weights' values: +-1 for binary bits, -1/0/+1 ternary."""
    return hat(q, bits) @ np.asarray(w, np.int64).T


def values(w, kind):
    return 2 * np.asarray(w, np.int64) - 1 if kind == "binary" else np.asarray(w, np.int64)


def plain_layer(x, p: LayerParams):
    a, kind = p.bits, p.weights
    x = np.asarray(x, np.int64)
    t_len, d = x.shape
    h, dh = p.heads, p.head_dim
    wv = {n: values(getattr(p, n), kind) for n in ("Wq", "Wk", "Wv", "Wo", "W1", "W2")}
    xq = mt(x, p.th_attn)
    qq, kq, vq = (mt(prod(xq, wv[w], a), t) for w, t in (("Wq", p.tq), ("Wk", p.tk),
                                                           ("Wv", p.tv)))
    c = np.zeros((t_len, d), np.int64)
    for head in range(h):
        sl = slice(head * dh, (head + 1) * dh)
        s = hat(qq[:, sl], a) @ hat(kq[:, sl], a).T
        m = (s >= p.ta[head]) & np.tril(np.ones((t_len, t_len), bool))
        c[:, sl] = m.astype(np.int64) @ hat(vq[:, sl], a)
    cq = mt(c, p.tc)
    o = prod(cq, wv["Wo"], a)
    x1 = np.clip(x + ((o * p.so) >> p.r), -32768, 32767)
    hq = mt(prod(mt(x1, p.th_ffn), wv["W1"], a), p.t1)
    y = prod(hq, wv["W2"], a)
    return np.clip(x1 + ((y * p.s2) >> p.r), -32768, 32767)


def plain_generate(prompt, n, m: ModelParams):
    seq = list(prompt)
    out = []
    for _ in range(n):
        x = m.E[np.asarray(seq)].astype(np.int64)
        if m.P is not None:
            x = np.clip(x + m.P[:len(seq)], -32768, 32767)
        for p in m.layers:
            x = plain_layer(x, p)
        logits = prod(mt(x[-1:], m.th_out), values(m.Wout, m.head_weights), m.head_bits)[0]
        nxt = int(np.argmax(logits))
        out.append(nxt)
        seq.append(nxt)
    return out


SHAPES = [(24, 2, 40, 5), (40, 4, 24, 4), (64, 2, 72, 3)]       # D, H, F, T


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("shape", SHAPES)
def test_layer_equals_the_plain_formulation(bits, kind, shape):
    d, h, f, t = shape
    rng = np.random.default_rng(bits * 100 + len(kind) + d)
    p = random_layer(rng, d_model=d, heads=h, d_ff=f, bits=bits, weights=kind)
    x = random_activations(rng, t, d)
    want = plain_layer(x, p)
    assert np.array_equal(golden.layer(x, p), want)
    assert np.array_equal(golden.layer_decode(x, p), want)          # prefill equals decode
    cache = golden.KVCache(h, d // h, t, bits)
    split = t // 2
    both = np.concatenate([golden.layer_step(x[:split], p, cache),
                           golden.layer_step(x[split:], p, cache)])
    assert np.array_equal(both, want)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("k", [1, 31, 33, 70])
def test_linear_equals_prod_and_mt(bits, kind, k):
    rng = np.random.default_rng(bits * 1000 + k)
    top = (1 << bits) - 1
    x = rng.integers(0, top + 1, size=(6, k))
    w = rng.integers(0, 2, size=(5, k)) if kind == "binary" else rng.integers(-1, 2, (5, k))
    want = prod(x, values(w, kind), bits)
    assert np.array_equal(golden.linear(x, w, bits=bits, weights=kind), want)
    for levels in (1, 3, 15):
        t = np.sort(rng.integers(-top * k - 2, top * k + 3, size=(5, levels)), axis=1)
        got = golden.linear(x, w, t if levels > 1 else t[:, 0], bits=bits, weights=kind)
        assert np.array_equal(got, mt(want, t))
        assert got.dtype == np.uint8


@pytest.mark.parametrize("k", [1, 2, 7, 32, 33, 95])
def test_ternary_plane_identity(k):
    """prod(a, w) = (prod(a, b_lo) + prod(a, b_hi)) / 2, exact for every K (odd too)."""
    rng = np.random.default_rng(k)
    for bits in (1, 2, 3, 4):
        a = hat(rng.integers(0, 1 << bits, size=(9, k)), bits)
        w = rng.integers(-1, 2, size=(4, k))
        lo, hi = 2 * (w >= 0) - 1, 2 * (w > 0) - 1
        both = a @ lo.T + a @ hi.T
        assert (both % 2 == 0).all()
        assert np.array_equal(both // 2, a @ w.T)


def test_one_bit_binary_is_version_one():
    """A = 1 with binary weights: the same integers as version 1's binary formulation."""
    from reference import layer as v1_layer

    rng = np.random.default_rng(3)
    p = random_layer(rng, d_model=48, heads=3, d_ff=40)
    assert (p.bits, p.weights) == (1, "binary")
    x = random_activations(rng, 7, 48)
    d = {**p.to_dict(), "heads": 3}
    assert np.array_equal(golden.layer(x, p), v1_layer(x, d))


@pytest.mark.parametrize("head", [(1, "binary"), (2, "ternary"), (4, "binary")])
def test_hybrid_model_generates_like_the_plain_formulation(head):
    """Layers of different precision in one model, a position table, the head's own."""
    rng = np.random.default_rng(11)
    layers = (random_layer(rng, d_model=32, heads=2, d_ff=24, bits=1, weights="binary"),
              random_layer(rng, d_model=32, heads=2, d_ff=40, bits=3, weights="ternary"),
              random_layer(rng, d_model=32, heads=4, d_ff=16, bits=2, weights="binary"))
    m = random_model(rng, vocab=9, d_model=32, heads=2, d_ff=8, n_layers=1, head_bits=head[0],
                     head_weights=head[1], positions=12)
    m = ModelParams(E=m.E, layers=layers, th_out=m.th_out, Wout=m.Wout, head_bits=m.head_bits,
                    head_weights=m.head_weights, P=m.P)
    prompt = [1, 5, 0, 8]
    assert golden.generate(prompt, 5, m).tolist() == plain_generate(prompt, 5, m)
    x = golden.embed(prompt, m)
    assert np.array_equal(x, np.clip(m.E[prompt].astype(np.int64) + m.P[:4], -32768, 32767))
    with pytest.raises(ValueError, match="need 12 positions; the model's position table has 12"
                       if False else "position table has 12"):
        golden.generate(prompt, 10, m)
    with pytest.raises(ValueError, match="position 12 is beyond the model's position table"):
        golden.embed([1, 2], m, start=11)


def test_version_two_files_round_trip_and_version_one_loads(tmp_path):
    from importlib import resources

    shipped = ModelParams.load(resources.files("onebit.host") / "one_bit_model.npz")
    assert all((p.bits, p.weights) == (1, "binary") for p in shipped.layers)
    assert (shipped.head_bits, shipped.head_weights, shipped.P) == (1, "binary", None)
    rng = np.random.default_rng(5)
    layers = tuple(random_layer(rng, d_model=24, heads=2, d_ff=20, bits=b, weights=k)
                   for b, k in ((1, "ternary"), (4, "binary"), (2, "ternary")))
    m = random_model(rng, vocab=6, d_model=24, heads=2, d_ff=8, n_layers=1, head_bits=3,
                     head_weights="ternary", positions=9)
    m = ModelParams(E=m.E, layers=layers, th_out=m.th_out, Wout=m.Wout, head_bits=3,
                    head_weights="ternary", P=m.P, charset="abcdef", logit_scale=0.5)
    m.save(tmp_path / "m.npz")
    back = ModelParams.load(tmp_path / "m.npz")
    assert (back.head_bits, back.head_weights, back.charset, back.logit_scale) == \
        (3, "ternary", "abcdef", 0.5)
    assert np.array_equal(back.P, m.P) and np.array_equal(back.Wout, m.Wout)
    for a, b in zip(back.layers, m.layers, strict=True):
        assert (a.bits, a.weights) == (b.bits, b.weights)
        for key, value in b.to_dict().items():
            assert np.array_equal(np.asarray(getattr(a, key)), np.asarray(value)), key
    assert golden.generate([1, 2], 3, back).tolist() == golden.generate([1, 2], 3, m).tolist()
    shipped.save(tmp_path / "s.npz")                     # a version-1 model, saved as version 2
    again = ModelParams.load(tmp_path / "s.npz")
    assert golden.generate([3, 4], 4, again).tolist() == golden.generate([3, 4], 4, shipped)\
        .tolist()


def _layer_dict(bits=2, kind="binary", d=16, f=12):
    p = random_layer(np.random.default_rng(0), d_model=d, heads=2, d_ff=f, bits=bits,
                     weights=kind)
    return p.to_dict()


@pytest.mark.parametrize("change, kw, error, message", [
    ({}, {"bits": 5}, ValueError, r"bits must be 1, 2, 3 or 4 \(activation bits\), not 5"),
    ({}, {"bits": 0}, ValueError, r"bits must be 1, 2, 3 or 4"),
    ({}, {"weights": "quaternary"}, ValueError, "weights must be 'binary' or 'ternary'"),
    ({"tq": np.zeros((16, 2), int)}, {"bits": 2}, ValueError,
     r"tq must have shape \(16, 3\) for 3 levels, not \(16, 2\)"),
    ({"tq": np.zeros(16, int)}, {"bits": 2}, ValueError,
     r"tq must have shape \(16, 3\) for 3 levels, not \(16,\)"),
    ({"t1": np.tile([3, 1, 2], (12, 1))}, {"bits": 2}, ValueError,
     r"t1\[0\] = \[3, 1, 2\] is not sorted: a channel's thresholds must be non-decreasing"),
    ({"Wq": np.full((16, 16), 2)}, {"bits": 2, "weights": "ternary"}, ValueError,
     r"Wq\[0, 0\] = 2 is not a ternary weight \(-1, 0 or \+1\)"),
    ({"Wq": np.full((16, 16), -1)}, {"bits": 2, "weights": "binary"}, ValueError,
     r"Wq must hold only 0 and 1"),
    ({"ta": np.zeros((2, 3), int)}, {"bits": 2}, ValueError, r"ta must have shape \(2,\)"),
])
def test_validation_names_the_field(change, kw, error, message):
    d = {**_layer_dict(kw.get("bits", 2) if kw.get("bits") in (1, 2, 3, 4) else 2,
                       kw.get("weights", "binary") if kw.get("weights") in
                       ("binary", "ternary") else "binary"), **change}
    with pytest.raises(error, match=message):
        LayerParams.from_dict(d, heads=2, **kw)


def test_linear_input_errors():
    with pytest.raises(ValueError, match=r"x\[0, 1\] = 4 is not a 2-bit level \(0..3\)"):
        golden.linear(np.array([[0, 4]]), np.zeros((1, 2), int), bits=2)
    with pytest.raises(ValueError, match=r"w must have shape \(\*, 2\), not \(1, 3\)"):
        golden.linear(np.array([[0, 1]]), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match=r"thresholds\[0\] = \[2, 1, 0\] is not sorted"):
        golden.linear(np.array([[0, 1]]), np.zeros((1, 2), int), np.array([[2, 1, 0]]))
    with pytest.raises(ValueError, match=r"thresholds must have shape \(1,\) or \(1, 3\)"):
        golden.linear(np.array([[0, 1]]), np.zeros((1, 2), int), np.array([[2, 1]]))


def test_damaged_version_two_entries(tmp_path):
    m = random_model(np.random.default_rng(2), vocab=4, d_model=16, heads=2, d_ff=8,
                     n_layers=1, head_weights="ternary")
    m.save(tmp_path / "m.npz")
    data = dict(np.load(tmp_path / "m.npz"))
    bad = dict(data, **{"layer0.weights": np.str_("tern")})
    np.savez(tmp_path / "b.npz", **bad)
    with pytest.raises(ModelFileError, match="'layer0.weights' = 'tern' is not"):
        ModelParams.load(tmp_path / "b.npz")
    bad = dict(data, **{"Wout.hi": data["Wout.hi"] | ~data["Wout"] & np.uint32(1)})
    np.savez(tmp_path / "c.npz", **bad)
    with pytest.raises(ModelFileError, match="'Wout.hi' is damaged"):
        ModelParams.load(tmp_path / "c.npz")
    bad = dict(data, **{"layer0.bits": np.int64(9)})
    np.savez(tmp_path / "d.npz", **bad)
    with pytest.raises(ModelFileError, match="bits must be 1, 2, 3 or 4"):
        ModelParams.load(tmp_path / "d.npz")
