"""Seeded random layers and models whose thresholds sit where the data is, so every bit moves.

Used by the demo's ``--random`` model, by the tests and by the benchmarks. Layers and models of
A = 1 with binary weights (the defaults) are drawn exactly as they always were, so a seed gives
the same model as before.
"""

from __future__ import annotations

import numpy as np

from .params import LayerParams, ModelParams

__all__ = ["random_layer", "random_model", "random_activations"]


def _weights(rng: np.random.Generator, kind: str, *shape: int) -> np.ndarray:
    if kind == "binary":
        return rng.integers(0, 2, size=shape, dtype=np.uint8)
    return rng.integers(-1, 2, size=shape).astype(np.int8)


def _levels(rng: np.random.Generator, n: int, spread: int, levels: int) -> np.ndarray:
    """``n`` channels of ``levels`` sorted thresholds in ``[-spread, spread]`` (a vector for
    one level)."""
    if levels == 1:
        return rng.integers(-spread, spread + 1, size=n)
    return np.sort(rng.integers(-spread, spread + 1, size=(n, levels)), axis=1)


def random_layer(rng: np.random.Generator, *, d_model: int, heads: int, d_ff: int,
                 r: int = 4, bits: int = 1, weights: str = "binary") -> LayerParams:
    """Return a random layer with ``bits``-bit activations and ``weights`` of that kind;
    thresholds are near the centre of each value's range."""
    d, f = d_model, d_ff
    dh = d // heads if heads else 0
    if bits == 1 and weights == "binary":
        return _binary_layer(rng, d, heads, f, dh, r)
    lv = (1 << bits) - 1

    def spread(k: int, scale: int = 1) -> int:
        return max(1, int(scale * np.sqrt(k)))

    w = {n: _weights(rng, weights, *s) for n, s in (
        ("Wq", (d, d)), ("Wk", (d, d)), ("Wv", (d, d)), ("Wo", (d, d)), ("W1", (f, d)),
        ("W2", (d, f)))}
    return LayerParams(
        d_model=d, heads=heads, d_ff=f, **w,
        th_attn=_levels(rng, d, 64, lv), tq=_levels(rng, d, spread(d, lv), lv),
        tk=_levels(rng, d, spread(d, lv), lv), tv=_levels(rng, d, spread(d, lv), lv),
        ta=rng.integers(-spread(max(dh, 1), lv * lv), spread(max(dh, 1), lv * lv) + 1,
                        size=heads),
        tc=_levels(rng, d, 2 * lv, lv), th_ffn=_levels(rng, d, 64, lv),
        t1=_levels(rng, f, spread(d, lv), lv),
        so=rng.integers(-128, 128, size=d), s2=rng.integers(-128, 128, size=d), r=r,
        bits=bits, weights=weights)


def _binary_layer(rng, d, heads, f, dh, r) -> LayerParams:
    def bits(*shape: int) -> np.ndarray:
        return rng.integers(0, 2, size=shape, dtype=np.uint8)

    def near_zero(n: int, spread: int) -> np.ndarray:
        return rng.integers(-spread, spread + 1, size=n)

    def dot_spread(k: int) -> int:
        return max(1, int(np.sqrt(k)))

    return LayerParams(
        d_model=d, heads=heads, d_ff=f,
        Wq=bits(d, d), Wk=bits(d, d), Wv=bits(d, d), Wo=bits(d, d), W1=bits(f, d),
        W2=bits(d, f),
        th_attn=near_zero(d, 64), tq=near_zero(d, dot_spread(d)), tk=near_zero(d, dot_spread(d)),
        tv=near_zero(d, dot_spread(d)), ta=near_zero(heads, dot_spread(max(dh, 1))),
        tc=near_zero(d, 2), th_ffn=near_zero(d, 64), t1=near_zero(f, dot_spread(d)),
        so=rng.integers(-128, 128, size=d), s2=rng.integers(-128, 128, size=d), r=r)


def random_model(rng: np.random.Generator, *, vocab: int, d_model: int, heads: int, d_ff: int,
                 n_layers: int, bits: int = 1, weights: str = "binary", head_bits: int = 1,
                 head_weights: str = "binary", positions: int | None = None) -> ModelParams:
    """Return a random language model: ``n_layers`` layers of ``bits`` and ``weights``, a head
    of ``head_bits`` and ``head_weights``, and a position table of ``positions`` rows (none by
    default)."""
    e = rng.integers(-256, 257, size=(vocab, d_model)).astype(np.int16)
    layers = tuple(random_layer(rng, d_model=d_model, heads=heads, d_ff=d_ff, bits=bits,
                                weights=weights) for _ in range(n_layers))
    if head_bits == 1 and head_weights == "binary":
        th_out = rng.integers(-64, 65, size=d_model)
        wout = rng.integers(0, 2, size=(vocab, d_model), dtype=np.uint8)
    else:
        th_out = _levels(rng, d_model, 64, (1 << head_bits) - 1)
        wout = _weights(rng, head_weights, vocab, d_model)
    pos = None
    if positions is not None:
        pos = rng.integers(-64, 65, size=(positions, d_model)).astype(np.int16)
    return ModelParams(E=e, layers=layers, th_out=th_out, Wout=wout, head_bits=head_bits,
                       head_weights=head_weights, P=pos)


def random_activations(rng: np.random.Generator, t: int, d: int, spread: int = 256) -> np.ndarray:
    """Return int16 (t, d) residual-stream rows in [-spread, spread]."""
    return rng.integers(-spread, spread + 1, size=(t, d)).astype(np.int16)
