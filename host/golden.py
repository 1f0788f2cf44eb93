"""The bit-exact NumPy golden model of ``docs/numerics.md`` (version 2: hybrid precision).

Every product works on packed ``uint32`` words with ``np.bitwise_count``; no step holds one value
per byte in its inner loop. An A-bit activation vector travels as A bit-planes (plane i holds
bit i of every level), and since ``hat(q) = 2q - L = sum_i 2^i (2 p_i - 1)``, a product with
A-bit activations is the shift-and-add of A binary products, one per plane; a ternary weight
matrix is two binary planes whose products are summed and halved. Integers are exact
(``int64``), compared with ``==`` by the tests, never with a tolerance.

Prefill and decode are one function seen two ways: :func:`layer_step` takes a block of new rows
and a :class:`KVCache` that holds the packed K and V levels of earlier tokens. Prefill is one
call with an empty cache; decode is one call per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mlp import MLPParams
from .packing import WORD_BITS, pack_bits, words_for
from .params import (
    INT16_MAX,
    INT16_MIN,
    LayerParams,
    ModelParams,
    check_levels,
    check_weights,
    multi_thresholds,
    weight_planes,
)

__all__ = [
    "dot", "mdot", "binary_linear", "linear", "multi_threshold", "sat16", "KVCache",
    "layer_step", "layer", "layer_decode", "model_logits", "generate", "embed",
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
    mismatches = np.bitwise_count(a ^ w).sum(axis=-1, dtype=np.int64)
    return k - 2 * mismatches


def mdot(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return ``mdot(p, w) = 2 * popcount(p AND w) - popcount(p)`` of packed words."""
    p, w = _words("p", p), _words("w", w)
    both = np.bitwise_count(p & w).sum(axis=-1, dtype=np.int64)
    return 2 * both - np.bitwise_count(p).sum(axis=-1, dtype=np.int64)


def binary_linear(x: np.ndarray, w: np.ndarray, k: int,
                  thresholds: np.ndarray | None = None) -> np.ndarray:
    """Return version 1's ``BinaryLinear``: ``y[..., n] = dot(x[...], w[n])``.

    ``x`` (..., W) and ``w`` (N, W) are packed words over ``k`` bits. Without thresholds the
    result is ``int64`` (..., N); with ``thresholds`` (N,) it is the bits ``y >= t`` as ``uint8``.
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


def multi_threshold(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``MT(x, t)``: for integers ``x`` (..., N) and thresholds ``t`` (N,) or (N, L), the number
    of ``j`` with ``x >= t[n, j]``, as ``uint8`` levels (..., N)."""
    t = np.asarray(t)
    if t.ndim == 1:
        return (x >= t).astype(np.uint8)
    x = np.asarray(x)
    if x.size and np.iinfo(np.int32).min < x.min() and x.max() < np.iinfo(np.int32).max:
        # Exact in int32: a threshold below min(x) counts everywhere and one above max(x)
        # nowhere, as the clipped one does; half the bytes of int64 per compare.
        x = x.astype(np.int32)
        t = np.clip(t, int(x.min()), int(x.max()) + 1)
    levels = np.ascontiguousarray(t.T, dtype=x.dtype)         # (L, N): one row per level
    # Every level's compare at once, (..., L, N), summed over the level axis (not the last
    # axis, so the sum is a sweep over whole rows).
    above = (x[..., None, :] >= levels).view(np.uint8)
    return np.add.reduce(above, axis=-2, dtype=np.uint8)


def _planes(q: np.ndarray, bits: int) -> np.ndarray:
    """Levels (..., K) as packed bit-planes (bits, ..., words(K)) (one ``packbits`` for all
    planes; the levels come from this module's own thresholds, so they are not re-checked)."""
    q = np.asarray(q, dtype=np.uint8)
    k = q.shape[-1]
    shifts = np.arange(bits, dtype=np.uint8).reshape((bits,) + (1,) * q.ndim)
    planes = np.zeros((bits,) + q.shape[:-1] + (words_for(k) * WORD_BITS,), np.uint8)
    np.bitwise_and(q[None] >> shifts, 1, out=planes[..., :k])
    # Element k at bit k % 32 of word k // 32 (little-endian bytes read as uint32).
    return np.packbits(planes, axis=-1, bitorder="little").view("<u4").astype(np.uint32,
                                                                              copy=False)


def _wide(words: np.ndarray) -> np.ndarray:
    """Packed ``uint32`` words (..., W) as ``uint64`` words (..., W / 2) when W is even (the
    same bits: an XOR or AND popcount over them is unchanged), else as they are."""
    words = np.ascontiguousarray(words)
    return words.view(np.uint64) if words.shape[-1] % 2 == 0 else words


def _count(words: np.ndarray) -> np.ndarray:
    """Popcount of packed words (..., W) summed over the words: ``int32`` (...)."""
    if words.shape[-1] == 1:
        return np.bitwise_count(words[..., 0]).astype(np.int32)
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int32)


def _plane_weights(bits: int) -> np.ndarray:
    return (1 << np.arange(bits, dtype=np.int64))


def _prod(w_planes: np.ndarray, k: int, x_planes: np.ndarray, bits: int) -> np.ndarray:
    """``prod(hat(q), w[n])`` for activations as packed planes (bits, ..., W) and weights as
    packed binary planes (1 or 2, N, W) over ``k`` elements.

    Binary: ``sum_i 2^i dot(b_i, w) = L k - 2 sum_i 2^i popcount(p_i XOR w)``. Ternary (planes
    ``P_lo``, ``P_hi``): with the non-zero mask ``M = (P_hi OR NOT P_lo)`` over the k valid bits
    and the sign ``S = P_hi``, each non-zero weight contributes ``+-1`` per plane, so
    ``prod = L |M| - 2 sum_i 2^i popcount((p_i XOR S) AND M)``: one pass per activation plane,
    the same integers as the spec's two planes summed and halved."""
    # Words lead (W, A, ..., 1) x (W, N): the popcounts are summed over whole contiguous
    # blocks rather than along a short last axis.
    # One activation plane at a time keeps the intermediate arrays in cache.
    xw = np.moveaxis(x_planes, -1, 0)[..., None]                       # (W, A, ..., 1)
    shape = (w_planes.shape[2],) + (1,) * (xw.ndim - 3) + (w_planes.shape[1],)
    levels = (1 << bits) - 1
    # Horner from the top plane down, in int32 (at most L * K): sum_i 2^i popcount_i.
    weighted = np.zeros((), np.int32)
    if len(w_planes) == 1:
        wt = w_planes[0].T.reshape(shape)
        for i in range(bits - 1, -1, -1):
            m = np.bitwise_count(xw[:, i] ^ wt).sum(axis=0, dtype=np.int32)   # (..., N)
            weighted = (weighted << 1) + m
        return levels * k - 2 * weighted.astype(np.int64)
    lo, hi = w_planes
    mask = (hi | ~lo) & pack_bits(np.ones((1, k), np.uint8))[0]
    st, mt = hi.T.reshape(shape), mask.T.reshape(shape)
    for i in range(bits - 1, -1, -1):
        m = np.bitwise_count((xw[:, i] ^ st) & mt).sum(axis=0, dtype=np.int32)
        weighted = (weighted << 1) + m
    nonzero = np.bitwise_count(mask).sum(axis=1, dtype=np.int64)           # (N,)
    return levels * nonzero - 2 * weighted.astype(np.int64)


def linear(x: np.ndarray, w: np.ndarray, thresholds: np.ndarray | None = None, *,
           bits: int = 1, weights: str = "binary") -> np.ndarray:
    """The numerics' ``Linear``: ``y[t, n] = prod(hat(x[t]), w[n])``.

    ``x`` (T, K) holds activation levels in ``0..2^bits - 1``; ``w`` (N, K) binary weights
    (``{0, 1}``, bit 1 = +1) or ternary ones (``{-1, 0, 1}``, ``weights="ternary"``). Without
    thresholds the result is ``int64`` (T, N); with ``thresholds`` (N,) or (N, L') the output
    levels ``MT(y[t, n], thresholds[n])`` as ``uint8``.
    """
    xq = check_levels("x", x, bits)
    if xq.ndim != 2:
        raise ValueError(f"x must be 2-D (tokens, K), not shape {xq.shape}")
    wm = check_weights("w", w, weights, (None, xq.shape[1]))
    y = _prod(weight_planes(wm, weights), wm.shape[1], _planes(xq, bits), bits)
    if thresholds is None:
        return y
    t = multi_thresholds("thresholds", thresholds, wm.shape[0])
    return multi_threshold(y, t)


def mlp(x: np.ndarray, m: MLPParams) -> np.ndarray:
    """A quantized MLP (``MLPParams``): ``x`` raw floats (through the model's input quantizer)
    or integer levels, one row each. Returns the last layer's levels (``uint8``) or, without
    thresholds, its integers plus the layer's offsets (``int64``), one row per input."""
    q = m.levels(x)
    for layer in m.layers:
        q = linear(q, layer.w, layer.thresholds, bits=layer.bits, weights=layer.weights)
    last = m.layers[-1]
    return q if last.thresholds is not None else q + last.offset


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
    """The packed K and V levels of the tokens seen so far by one layer.

    ``k`` is (capacity, bits, H, words(Dh)): each token's key levels as bit-planes, packed per
    head. ``vt`` is (bits, D, words(capacity)): the value planes transposed, so bit ``j`` of
    ``vt[i, d]`` is bit i of ``V[j, d]``, the packed operand of the context ``msum`` over tokens.
    """

    heads: int
    head_dim: int
    capacity: int
    bits: int = 1
    length: int = 0
    k: np.ndarray = field(init=False)
    vt: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError(f"KV cache capacity must be a positive integer, not "
                             f"{self.capacity!r}")
        if self.bits not in (1, 2, 3, 4):
            raise ValueError(f"KV cache bits must be 1, 2, 3 or 4, not {self.bits!r}")
        self.k = np.zeros((self.capacity, self.bits, self.heads, words_for(self.head_dim)),
                          np.uint32)
        self.vt = np.zeros((self.bits, self.heads * self.head_dim, words_for(self.capacity)),
                           np.uint32)

    def append(self, kq: np.ndarray, vq: np.ndarray) -> None:
        """Append rows: ``kq`` (n, H, Dh) key levels, ``vq`` (n, D) value levels."""
        n = kq.shape[0]
        if self.length + n > self.capacity:
            raise OverflowError(f"KV cache holds {self.capacity} tokens; {self.length} are in it"
                                f" and {n} more do not fit")
        pos = self.length + np.arange(n)
        self.k[pos] = np.moveaxis(_planes(kq, self.bits), 0, 1)      # (n, A, H, Wh)
        word, bit = pos // WORD_BITS, (pos % WORD_BITS).astype(np.uint32)
        for b in range(self.bits):
            shifted = ((vq.T >> b) & 1).astype(np.uint32) << bit      # (D, n)
            for w in np.unique(word):                                 # words the rows touch
                self.vt[b, :, w] |= np.bitwise_or.reduce(shifted[:, word == w], axis=1)
        self.length += n


def layer_step(x: np.ndarray, p: LayerParams, cache: KVCache) -> np.ndarray:
    """Run the layer on new rows ``x`` (n, D) int16 that follow the rows already in ``cache``.

    Appends the new K and V levels to ``cache`` and returns the new rows' output (n, D) int16.
    """
    d, h, dh = p.d_model, p.heads, p.head_dim
    a, lv = p.bits, (1 << p.bits) - 1
    xi = _check_rows("x", x, d)
    n = xi.shape[0]
    if (cache.heads, cache.head_dim, cache.bits) != (h, dh, a):
        raise ValueError(f"KV cache is for {cache.heads} heads of width {cache.head_dim} at "
                         f"{cache.bits} bits, not {h} of width {dh} at {a}")
    p0 = cache.length

    def proj(q: np.ndarray, w: str) -> np.ndarray:
        return _prod(p.planes(w), getattr(p, w).shape[1], _planes(q, a), a)

    # 1-2. Quantise the residual stream; Q/K/V projections with multi-thresholds.
    xq = multi_threshold(xi, p.th_attn)
    xplanes = _planes(xq, a)
    qq, kq, vq = (multi_threshold(_prod(p.planes(w), d, xplanes, a), t)
                  for w, t in (("Wq", p.tq), ("Wk", p.tk), ("Wv", p.tv)))
    cache.append(kq.reshape(n, h, dh), vq)
    length = cache.length

    # 3-4. Per-head scores aprod(hat(Q), hat(K)) = sum_ij 2^(i+j) dot(plane_i, plane_j),
    # thresholded, with the causal mask j <= i. All A^2 plane pairs in one XOR-popcount over
    # (n, P, H, A, A) and one weighted sum (not A^2 passes over small arrays).
    qw = _wide(_planes(qq.reshape(n, h, dh), a))                           # (A, n, H, W)
    kw = _wide(cache.k[:length].transpose(1, 0, 2, 3))                     # (A, P, H, W)
    mism = np.zeros((n, length, h), np.int32)
    for i in range(a - 1, -1, -1):      # Horner over Q's planes, each over K's: 2^(i + j)
        inner = np.zeros((n, length, h), np.int32)
        for j in range(a - 1, -1, -1):
            inner = (inner << 1) + _count(qw[i][:, None] ^ kw[j][None])
        mism = (mism << 1) + inner
    s = lv * lv * dh - 2 * mism.astype(np.int64)
    causal = np.arange(length)[None, :] <= (p0 + np.arange(n))[:, None]
    mask = (s >= p.ta[None, None, :]) & causal[:, :, None]
    mask_packed = pack_bits(np.moveaxis(mask, 1, 2))              # (n, H, words(P))

    # 5. Context: msum(mask, hat(V)) = sum_i 2^i mdot(mask, plane_i), per head; tc.
    vt = _wide(cache.vt[:, :, :words_for(length)].reshape(a, h, dh, -1))  # (A, H, Dh, W)
    mw = _wide(mask_packed)                                                # (n, H, W)
    both = _count(mw[None, :, :, None] & vt[:, None])                     # (A, n, H, Dh)
    weighted = both[a - 1]
    for i in range(a - 2, -1, -1):                 # Horner: sum_i 2^i both[i]
        weighted = 2 * weighted + both[i]
    ones = np.bitwise_count(mask_packed).sum(axis=-1, dtype=np.int64)   # (n, H)
    c = 2 * weighted - lv * ones[..., None]
    cq = multi_threshold(c.reshape(n, d), p.tc)

    # 6. Output projection, residual scale-shift-add with saturation.
    o = proj(cq, "Wo")
    x1 = _scale_shift(xi, o, p.so, p.r)

    # 7-8. Feed-forward block.
    hq = multi_threshold(proj(multi_threshold(x1, p.th_ffn), "W1"), p.t1)
    y = proj(hq, "W2")
    return _scale_shift(x1, y, p.s2, p.r)


def layer(x: np.ndarray, p: LayerParams) -> np.ndarray:
    """Return the transformer layer over a whole sequence: int16 (T, D) to int16 (T, D)."""
    if not isinstance(p, LayerParams):
        raise TypeError(f"p must be LayerParams, not {type(p).__name__}")
    t = np.asarray(x).shape[0] if np.ndim(x) == 2 else 0
    cache = KVCache(p.heads, p.head_dim, max(t, 1), p.bits)
    return layer_step(x, p, cache)


def layer_decode(x: np.ndarray, p: LayerParams) -> np.ndarray:
    """Return the layer computed one token at a time with a KV cache (equals :func:`layer`)."""
    xi = _check_rows("x", x, p.d_model)
    cache = KVCache(p.heads, p.head_dim, max(xi.shape[0], 1), p.bits)
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


def embed(tokens: np.ndarray, m: ModelParams, start: int = 0) -> np.ndarray:
    """The input rows (T, D) int16 of ``tokens`` at positions ``start, start + 1, ...``:
    ``sat16(E[token] + P[position])`` (``E[token]`` without a position table)."""
    tok = _check_tokens(tokens, m.vocab)
    if m.P is None:
        return m.E[tok]
    last = start + len(tok) - 1
    if last >= m.P.shape[0]:
        raise ValueError(f"position {last} is beyond the model's position table of "
                         f"{m.P.shape[0]} positions")
    return sat16(m.E[tok].astype(np.int64) + m.P[start:last + 1])


def _head(x: np.ndarray, m: ModelParams) -> np.ndarray:
    xq = multi_threshold(x.astype(np.int64), m.th_out)
    return _prod(m.head_planes(), m.d_model, _planes(xq, m.head_bits), m.head_bits)


def model_logits(tokens: np.ndarray, m: ModelParams) -> np.ndarray:
    """Return the logits (T, V) int64 of the language model for every position of ``tokens``."""
    x = embed(tokens, m)
    for p in m.layers:
        x = layer(x, p)
    return _head(x, m)


def generate(prompt: np.ndarray, n: int, m: ModelParams) -> np.ndarray:
    """Greedily generate ``n`` tokens after ``prompt`` (prefill, then decode with KV caches).

    The next token is the argmax of the logits, the lowest index winning a tie. A model with a
    position table refuses a sequence longer than it (``len(prompt) + n - 1`` positions).
    """
    tok = _check_tokens(prompt, m.vocab)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    if m.P is not None and len(tok) + max(n, 1) - 1 > m.P.shape[0]:
        raise ValueError(f"{len(tok)} prompt tokens and {n} more need "
                         f"{len(tok) + max(n, 1) - 1} positions; the model's position table "
                         f"has {m.P.shape[0]}")
    caches = [KVCache(p.heads, p.head_dim, len(tok) + n, p.bits) for p in m.layers]
    x = embed(tok, m)
    out: list[int] = []
    for step in range(n):
        for p, cache in zip(m.layers, caches, strict=True):
            x = layer_step(x, p, cache)
        nxt = int(np.argmax(_head(x[-1:], m)[0]))   # argmax returns the first maximum
        out.append(nxt)
        if step + 1 < n:                            # the last token is not fed back
            x = embed([nxt], m, start=len(tok) + step)
    return np.asarray(out, dtype=np.int64)

