"""The bit-exact NumPy golden model of ``docs/numerics.md``.

Every function works on packed ``uint32`` words with ``np.bitwise_count``; no step holds one bit
per byte in its inner loop. Integers are exact (``int32``/``int64``), compared with ``==`` by the
tests, never with a tolerance.

Prefill and decode are one function seen two ways: :func:`layer_step` takes a block of new rows
and a :class:`KVCache` that holds the packed ``Kb``/``Vb`` rows of earlier tokens. Prefill is one
call with an empty cache; decode is one call per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .packing import WORD_BITS, pack_bits, words_for
from .params import INT16_MAX, INT16_MIN, LayerParams, ModelParams

__all__ = [
    "dot", "mdot", "binary_linear", "sat16", "KVCache", "layer_step", "layer", "layer_decode",
    "model_logits", "generate",
]


def _words(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.uint32:
        raise TypeError(f"{name} must be packed uint32 words, not dtype {arr.dtype}")
    return arr


def dot(a: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Return ``dot(a, w) = 2 * popcount(XNOR(a, w)) - k`` over the ``k`` valid bits.

    ``a`` (..., W) and ``w`` (..., W) are packed words that broadcast against each other. Padding
    bits are zero in both, so they never mismatch: ``dot = k - 2 * popcount(a XOR w)``.
    """
    a, w = _words("a", a), _words("w", w)
    if a.shape[-1] != words_for(k) or w.shape[-1] != words_for(k):
        raise ValueError(f"{k} bits need {words_for(k)} words, not {a.shape[-1]} and "
                         f"{w.shape[-1]}")
    mismatches = np.bitwise_count(a ^ w).sum(axis=-1, dtype=np.int32)
    return k - 2 * mismatches


def mdot(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return ``mdot(p, w) = 2 * popcount(p AND w) - popcount(p)`` of packed words."""
    p, w = _words("p", p), _words("w", w)
    both = np.bitwise_count(p & w).sum(axis=-1, dtype=np.int32)
    return 2 * both - np.bitwise_count(p).sum(axis=-1, dtype=np.int32)


def binary_linear(x: np.ndarray, w: np.ndarray, k: int,
                  thresholds: np.ndarray | None = None) -> np.ndarray:
    """Return the spec's ``BinaryLinear``: ``y[..., n] = dot(x[...], w[n])``.

    ``x`` (..., W) and ``w`` (N, W) are packed words over ``k`` bits. Without thresholds the
    result is ``int32`` (..., N); with ``thresholds`` (N,) it is the bits ``y >= t`` as ``uint8``.
    """
    x, w = _words("x", x), _words("w", w)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (N, words), not shape {w.shape}")
    y = dot(x[..., None, :], w, k)
    if thresholds is None:
        return y
    t = np.asarray(thresholds)
    if t.shape != (w.shape[0],):
        raise ValueError(f"thresholds must have shape ({w.shape[0]},), not {t.shape}")
    return (y >= t).astype(np.uint8)


def sat16(x: np.ndarray) -> np.ndarray:
    """Clamp integers to [-32768, 32767] and return ``int16``."""
    return np.clip(x, INT16_MIN, INT16_MAX).astype(np.int16)


def _scale_shift(x: np.ndarray, y: np.ndarray, s: np.ndarray, r: int) -> np.ndarray:
    """``sat16(x + ((y * s) >> r))`` with exact int64 products and an arithmetic shift."""
    return sat16(x.astype(np.int64) + ((y.astype(np.int64) * s.astype(np.int64)) >> r))


def _check_rows(name: str, x: np.ndarray, d: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"{name} must have shape (T, {d}), not {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an int16 array, not dtype {arr.dtype}")
    if arr.size and (arr.min() < INT16_MIN or arr.max() > INT16_MAX):
        raise ValueError(f"{name} holds values outside int16 [{INT16_MIN}, {INT16_MAX}]")
    return arr.astype(np.int64)


@dataclass
class KVCache:
    """Packed ``Kb`` and ``Vb`` rows of the tokens seen so far by one layer.

    ``k`` is (capacity, H, words(Dh)): each token's keys, packed per head. ``vt`` is
    (D, words(capacity)): the values transposed, so bit ``j`` of row ``d`` is ``Vb[j, d]``, which
    is the packed operand of the context ``mdot`` over tokens.
    """

    heads: int
    head_dim: int
    capacity: int
    length: int = 0
    k: np.ndarray = field(init=False)
    vt: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError(f"KV cache capacity must be a positive integer, not "
                             f"{self.capacity!r}")
        self.k = np.zeros((self.capacity, self.heads, words_for(self.head_dim)), np.uint32)
        self.vt = np.zeros((self.heads * self.head_dim, words_for(self.capacity)), np.uint32)

    def append(self, kb: np.ndarray, vb: np.ndarray) -> None:
        """Append rows: ``kb`` (n, H, words(Dh)) packed keys, ``vb`` (n, D) value bits."""
        n = kb.shape[0]
        if self.length + n > self.capacity:
            raise OverflowError(f"KV cache holds {self.capacity} tokens; {self.length} are in it"
                                f" and {n} more do not fit")
        pos = self.length + np.arange(n)
        self.k[pos] = kb
        word, bit = pos // WORD_BITS, (pos % WORD_BITS).astype(np.uint32)
        for i in range(n):
            self.vt[:, word[i]] |= vb[i].astype(np.uint32) << bit[i]
        self.length += n


def layer_step(x: np.ndarray, p: LayerParams, cache: KVCache) -> np.ndarray:
    """Run the layer on new rows ``x`` (n, D) int16 that follow the rows already in ``cache``.

    Appends the new ``Kb``/``Vb`` rows to ``cache`` and returns the new rows' output (n, D) int16.
    """
    d, h, dh, f = p.d_model, p.heads, p.head_dim, p.d_ff
    xi = _check_rows("x", x, d)
    n = xi.shape[0]
    if (cache.heads, cache.head_dim) != (h, dh):
        raise ValueError(f"KV cache is for {cache.heads} heads of width {cache.head_dim}, "
                         f"not {h} of width {dh}")
    p0 = cache.length

    # 1-2. Binarise the residual stream; binary Q/K/V projections with thresholds.
    xb = pack_bits(xi >= p.th_attn)
    qb = binary_linear(xb, p.packed("Wq"), d, p.tq)
    kb = binary_linear(xb, p.packed("Wk"), d, p.tk)
    vb = binary_linear(xb, p.packed("Wv"), d, p.tv)
    cache.append(pack_bits(kb.reshape(n, h, dh)), vb)
    length = cache.length

    # 3-4. Per-head binary scores, thresholded, with the causal mask j <= i.
    qh = pack_bits(qb.reshape(n, h, dh))                      # (n, H, Wh)
    keys = cache.k[:length]                                  # (P, H, Wh)
    s = dot(qh[:, None, :, :], keys[None, :, :, :], dh)      # (n, P, H)
    causal = np.arange(length)[None, :] <= (p0 + np.arange(n))[:, None]
    a = (s >= p.ta[None, None, :]) & causal[:, :, None]
    a_packed = pack_bits(np.moveaxis(a, 1, 2))               # (n, H, words(P))

    # 5. Context: mask times binary values, per head; thresholds tc.
    vt = cache.vt[:, :words_for(length)].reshape(h, dh, -1)  # (H, Dh, words(P))
    c = mdot(a_packed[:, :, None, :], vt[None, :, :, :]).reshape(n, d)
    cb = pack_bits(c >= p.tc)

    # 6. Output projection, residual scale-shift-add with saturation.
    o = binary_linear(cb, p.packed("Wo"), d)
    x1 = _scale_shift(xi, o, p.so, p.r)

    # 7-8. Feed-forward block.
    hb = binary_linear(pack_bits(x1 >= p.th_ffn), p.packed("W1"), d, p.t1)
    y = binary_linear(pack_bits(hb), p.packed("W2"), f)
    return _scale_shift(x1, y, p.s2, p.r)


def layer(x: np.ndarray, p: LayerParams) -> np.ndarray:
    """Return the spec's transformer layer over a whole sequence: int16 (T, D) to int16 (T, D)."""
    if not isinstance(p, LayerParams):
        raise TypeError(f"p must be LayerParams, not {type(p).__name__}")
    t = np.asarray(x).shape[0] if np.ndim(x) == 2 else 0
    cache = KVCache(p.heads, p.head_dim, max(t, 1))
    return layer_step(x, p, cache)


def layer_decode(x: np.ndarray, p: LayerParams) -> np.ndarray:
    """Return the layer computed one token at a time with a KV cache (equals :func:`layer`)."""
    xi = _check_rows("x", x, p.d_model)
    cache = KVCache(p.heads, p.head_dim, max(xi.shape[0], 1))
    rows = [layer_step(xi[i:i + 1], p, cache) for i in range(xi.shape[0])]
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, p.d_model), np.int16)


def _check_tokens(tokens: np.ndarray, vocab: int) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"tokens must be a non-empty 1-D array, not shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        raise TypeError(f"tokens must be integers, not dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= vocab:
        raise ValueError(f"tokens must be in [0, {vocab - 1}], found {int(arr.min())}.."
                         f"{int(arr.max())}")
    return arr.astype(np.int64)


def _head(x: np.ndarray, m: ModelParams) -> np.ndarray:
    return binary_linear(pack_bits(x.astype(np.int64) >= m.th_out), pack_bits(m.Wout),
                         m.d_model)


def model_logits(tokens: np.ndarray, m: ModelParams) -> np.ndarray:
    """Return the logits (T, V) int32 of the language model for every position of ``tokens``."""
    tok = _check_tokens(tokens, m.vocab)
    x = m.E[tok]
    for p in m.layers:
        x = layer(x, p)
    return _head(x, m)


def generate(prompt: np.ndarray, n: int, m: ModelParams) -> np.ndarray:
    """Greedily generate ``n`` tokens after ``prompt`` (prefill, then decode with KV caches).

    The next token is the argmax of the logits, the lowest index winning a tie.
    """
    tok = _check_tokens(prompt, m.vocab)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    caches = [KVCache(p.heads, p.head_dim, len(tok) + n) for p in m.layers]
    x = m.E[tok]
    out: list[int] = []
    for _ in range(n):
        for p, cache in zip(m.layers, caches, strict=True):
            x = layer_step(x, p, cache)
        nxt = int(np.argmax(_head(x[-1:], m)[0]))   # argmax returns the first maximum
        out.append(nxt)
        x = m.E[[nxt]]
    return np.asarray(out, dtype=np.int64)
