"""A multi-bit, ternary product as one binary product (the spec's thermometer identity).

An A-bit level ``q`` (``L = 2^A - 1``) stands for ``2q - L = sum_{j=1..L} (2 [q >= j] - 1)``, so
``prod(hat(q), w)`` is the binary ``dot`` of the L thermometer bit-vectors ``[q >= j]`` laid end
to end with ``w`` repeated L times. A ternary ``w`` is its two planes ``P_lo = [w >= 0]``,
``P_hi = [w > 0]``: the inputs laid twice against both planes give ``2 prod``. So the array's
XNOR-popcount computes ``scale * prod`` over ``K' = planes * L * K`` bits in one pass, and a
threshold ``t`` on ``prod`` is the threshold ``scale * t`` on the lowered sum, which lets the
device apply every level of a multi-threshold itself (``Accelerator.linear``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["lowered_k", "lower_inputs", "lower_weights", "lower_thresholds"]


def _planes(kind: str) -> int:
    return 2 if kind == "ternary" else 1


def lowered_k(k: int, bits: int, kind: str) -> int:
    """Bits of a lowered row: ``planes * (2^bits - 1) * k``."""
    return _planes(kind) * ((1 << bits) - 1) * k


def lower_inputs(q: np.ndarray, bits: int, kind: str) -> np.ndarray:
    """Levels ``(T, K)`` as thermometer bits ``(T, K')``: block ``j - 1`` holds ``[q >= j]``,
    the whole laid twice for ternary weights."""
    therm = np.concatenate([(q >= j) for j in range(1, 1 << bits)], axis=1).astype(np.uint8)
    return np.concatenate([therm] * _planes(kind), axis=1)


def lower_weights(w: np.ndarray, bits: int, kind: str) -> np.ndarray:
    """Weights ``(N, K)`` (0/1 binary or -1/0/+1 ternary) as bits ``(N, K')`` matching
    ``lower_inputs``: each plane repeated ``2^bits - 1`` times."""
    planes = [w] if kind == "binary" else [w >= 0, w > 0]
    reps = (1 << bits) - 1
    return np.concatenate([np.tile(np.asarray(p, np.uint8), reps) for p in planes], axis=1)


def lower_thresholds(t: np.ndarray, k: int, bits: int, kind: str) -> np.ndarray:
    """Thresholds on ``prod`` as thresholds on the lowered sum: clamped to the product's range
    ``[-L K - 1, L K + 1]`` (beyond it a comparison cannot change) and scaled by the planes."""
    span = ((1 << bits) - 1) * k
    return np.clip(np.asarray(t, np.int64), -span - 1, span + 1) * _planes(kind)
