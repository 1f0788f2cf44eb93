"""From float weights and batch-norm statistics to the spec's bits, integer thresholds and scales.

NumPy only; shared by ``onebit quantize`` and the exporter of trained models (``onebit.train``).

Binarisers (each maps a float matrix ``(out, in)`` to ``{0,1}``, bit 1 meaning +1):

- :func:`binarize_sign`: ``w >= 0`` (zero goes to +1, as the spec's ``>=``).
- :func:`binarize_stochastic`: +1 with probability ``(clip(w, -1, 1) + 1) / 2``; unbiased:
  the mean of the +-1 draws converges to ``clip(w, -1, 1)``.
- :func:`binarize_error_feedback`: along each row, the quantisation error of one element is
  carried into the next (first-order sigma-delta, the row's scale ``mean |w|``), so the running
  sums of ``scale * b`` track those of ``w``.

Batch-norm folding (FINN): a channel's bit is ``gamma * (x - mean) / sqrt(var + eps) + beta >= 0``.
For an integer ``x`` this is ``x >= t`` when ``gamma > 0``; when ``gamma < 0`` it is ``x <= c``,
which the spec's single comparison direction serves by negating ``x``: :func:`fold_batchnorm`
returns a ``flip`` flag, and the caller negates the weight row that produces ``x`` (``-x >= t``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "binarize_sign", "binarize_stochastic", "binarize_error_feedback", "BINARIZERS",
    "ternarize_absmean", "level_boundaries", "fold_batchnorm", "quantize_scales",
]


def _matrix(name: str, w: np.ndarray) -> np.ndarray:
    arr = np.asarray(w)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must be a non-empty 2-D (out, in) matrix, not shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or arr.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, not dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name}{list(idx)} = {float(arr[idx])} is not a finite number")
    return arr


def _vector(name: str, v) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, not dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (channels,), not shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds a value that is not a finite number")
    return a


def binarize_sign(w: np.ndarray, *, name: str = "w") -> np.ndarray:
    """Return ``w >= 0`` as ``uint8`` bits (deterministic sign, zero to +1)."""
    return (_matrix(name, w) >= 0).astype(np.uint8)


def binarize_stochastic(w: np.ndarray, *, seed: int, name: str = "w") -> np.ndarray:
    """Return bits drawn +1 with probability ``(clip(w, -1, 1) + 1) / 2`` (seeded, unbiased)."""
    arr = _matrix(name, w)
    p = (np.clip(arr, -1.0, 1.0) + 1.0) / 2.0
    return (np.random.default_rng(seed).random(arr.shape) < p).astype(np.uint8)


def binarize_error_feedback(w: np.ndarray, *, name: str = "w") -> np.ndarray:
    """Return bits chosen along each row with the quantisation error carried forward.

    With ``s`` the row's ``mean |w|``: ``b[k] = sign(w[k] + e)``, ``e <- w[k] + e - s * b[k]``.
    The error stays within ``[-s, s]`` plus the largest ``|w|``, so every prefix sum of
    ``s * b`` is within that bound of the prefix sum of ``w``.
    """
    arr = _matrix(name, w)
    scale = np.abs(arr).mean(axis=1)
    bits = np.zeros(arr.shape, np.uint8)
    err = np.zeros(arr.shape[0])
    for k in range(arr.shape[1]):
        v = arr[:, k] + err
        b = v >= 0
        bits[:, k] = b
        err = v - scale * np.where(b, 1.0, -1.0)
    return bits


BINARIZERS = ("sign", "stochastic", "error-feedback")


def ternarize_absmean(w: np.ndarray, *, name: str = "w") -> tuple[np.ndarray, float]:
    """BitNet b1.58's absmean rule: ``w_t = round(clip(w / mean|w|, -1, 1))`` over the whole
    matrix; return ``(w_t, mean|w|)`` (``int8`` in {-1, 0, 1}, and the scale that makes
    ``mean|w| * w_t`` approximate ``w``; a zero matrix has scale 1 and all-zero weights)."""
    arr = _matrix(name, w)
    scale = float(np.abs(arr).mean())
    if scale == 0.0:
        return np.zeros(arr.shape, np.int8), 1.0
    return np.round(np.clip(arr / scale, -1.0, 1.0)).astype(np.int8), scale


def level_boundaries(bits: int, step: float = 1.0) -> np.ndarray:
    """Where an A-bit activation quantiser of ``step`` changes level: its output level ``q``
    stands for ``step * (2q - L)``, and ``q >= j`` exactly when its input ``z >= step * (2j - 1
    - L)``, j = 1..L (midway between neighbouring values; for A = 1 the sign, ``z >= 0``)."""
    lv = (1 << bits) - 1
    return step * (2.0 * np.arange(1, lv + 1) - 1 - lv)


def fold_batchnorm(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
                   eps: float, lo: int, hi: int, negate: bool, name: str = "bn",
                   boundaries: np.ndarray | None = None,
                   scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``gamma * (scale * x - mean) / sqrt(var + eps) + beta >= 0`` into ``(t, flip)``.

    With ``boundaries`` (``level_boundaries``: the L values ``z_j`` where an A-bit quantiser
    after the batch norm changes level) the result is a multi-threshold ``t`` (N, L) whose
    ``MT(x, t[n])`` is that quantiser's level; without, one threshold per channel (``z >= 0``).
    ``scale`` (positive) is what one unit of the integer ``x`` is worth in the float network
    (the input activations' step times the weights' scale).

    ``x`` is an integer in ``[lo, hi - 1]`` (a dot product: ``lo = -K, hi = K + 1``); ``t`` is
    clamped to ``[lo, hi]`` (``lo`` means always 1, ``hi`` always 0). Where ``flip[n]`` is False
    the bit is ``x >= t[n]``. Where it is True (``gamma < 0``):

    - ``negate=True`` (``x`` is a dot product whose weight row can be negated): the bit is
      ``-x >= t[n]``; negate row ``n`` and the output bit is unchanged.
    - ``negate=False`` (``x`` is the residual stream or a context sum): ``x >= t[n]`` is the
      *inverted* bit; flip column ``n`` of every weight that reads it.

    ``gamma == 0`` gives a constant bit (``beta >= 0``) and no flip.
    """
    arrays = {key: _vector(f"{name}.{key}", v) for key, v in
              (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))}
    n = arrays["gamma"].shape[0]
    for key, a in arrays.items():
        if a.shape != (n,):
            raise ValueError(f"{name}.{key} must have shape ({n},) like {name}.gamma, not "
                             f"{a.shape}")
    if (arrays["var"] < 0).any():
        raise ValueError(f"{name}.var must be non-negative, found {arrays['var'].min()!r}")
    if not eps > 0 and not (arrays["var"] > 0).all():
        raise ValueError(f"{name}: eps must be positive when a variance is zero, not {eps!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{name}: the scale must be a positive number, not {scale!r}")
    z = np.zeros(1) if boundaries is None else np.asarray(boundaries, np.float64)
    g, b, m = (arrays[k][:, None] for k in ("gamma", "beta", "mean"))
    s = np.sqrt(arrays["var"] + eps)[:, None]
    flip = arrays["gamma"] < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # Level j is reached at x >= c_j (g > 0) or x <= c_j (g < 0).
        c = (m + (z[None, :] - b) * s / g) / scale
    # x <= c  <=>  -x >= ceil(-c)  (negate: the level is unchanged)  <=>  not (x >= floor(c) +
    # 1)  (invert: the level becomes L - q, read as -hat(q)); sorted, as MT needs.
    flipped = np.sort(np.ceil(-c) if negate else np.floor(c) + 1, axis=1)
    t = np.where(flip[:, None], flipped, np.ceil(c))
    const = np.where(b >= z[None, :], lo, hi)       # gamma = 0: a constant level
    const = np.sort(const, axis=1)
    t = np.where((arrays["gamma"] == 0)[:, None], const, t)
    t = np.clip(np.nan_to_num(t, nan=lo, posinf=hi, neginf=lo), lo, hi).astype(np.int64)
    return (t[:, 0] if boundaries is None else t), flip


def quantize_scales(scales: dict[str, np.ndarray], *, max_shift: int = 15) -> tuple[
        dict[str, np.ndarray], int]:
    """Turn float per-channel scales into signed 8-bit integers and one shared shift ``r``.

    Picks the largest ``r`` (at most ``max_shift``) for which every ``round(s * 2**r)`` fits in
    [-128, 127], so that ``(y * s_int) >> r`` approximates ``y * s`` as closely as int8 allows.
    """
    arrays = {name: _vector(name, v) for name, v in scales.items()}
    biggest = max((float(np.abs(a).max(initial=0.0)) for a in arrays.values()), default=0.0)
    if biggest == 0.0:
        r = max_shift
    else:
        r = min(max_shift, math.floor(math.log2(127.5 / biggest)))
        if r < 0:
            raise ValueError(f"a scale of {biggest:g} does not fit signed 8 bits even with shift 0"
                             f" (largest allowed is 127)")
        while r > 0 and any((np.round(a * 2.0 ** r) > 127).any() or
                            (np.round(a * 2.0 ** r) < -128).any() for a in arrays.values()):
            r -= 1
    out = {n: np.clip(np.round(a * 2.0 ** r), -128, 127).astype(np.int64)
           for n, a in arrays.items()}
    return out, r
