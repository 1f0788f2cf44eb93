"""Seeded random layers and models whose thresholds sit where the data is, so every bit moves.

Used by the demo until a trained model ships, by the tests and by the benchmarks.
"""

from __future__ import annotations

import numpy as np

from .params import LayerParams, ModelParams

__all__ = ["random_layer", "random_model", "random_activations"]


def random_layer(rng: np.random.Generator, *, d_model: int, heads: int, d_ff: int,
                 r: int = 4) -> LayerParams:
    """Return a random layer; thresholds are small, near the centre of each dot's range."""
    d, f = d_model, d_ff
    dh = d // heads if heads else 0

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
                 n_layers: int) -> ModelParams:
    """Return a random language model of the spec's shape."""
    return ModelParams(
        E=rng.integers(-256, 257, size=(vocab, d_model)).astype(np.int16),
        layers=tuple(random_layer(rng, d_model=d_model, heads=heads, d_ff=d_ff)
                     for _ in range(n_layers)),
        th_out=rng.integers(-64, 65, size=d_model),
        Wout=rng.integers(0, 2, size=(vocab, d_model), dtype=np.uint8))


def random_activations(rng: np.random.Generator, t: int, d: int, spread: int = 256) -> np.ndarray:
    """Return int16 (t, d) residual-stream rows in [-spread, spread]."""
    return rng.integers(-spread, spread + 1, size=(t, d)).astype(np.int16)
