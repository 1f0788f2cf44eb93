"""Bit packing of binary vectors, as fixed by the numerics contract.

A binary vector of length K is stored in ``ceil(K / 32)`` little-endian ``uint32`` words:
element ``k`` is bit ``k % 32`` of word ``k // 32``, lowest bit first. Bit 1 means +1 and
bit 0 means -1. Unused high bits of the last word are zero. Both directions work on arrays
of any leading shape and pack along the last axis.
"""

from __future__ import annotations

import numpy as np

__all__ = ["WORD_BITS", "words_for", "pack_bits", "unpack_bits", "check_bits"]

WORD_BITS = 32


def words_for(k: int) -> int:
    """Return the number of 32-bit words that hold ``k`` bits."""
    if k < 0:
        raise ValueError(f"Bit count must be a non-negative integer, not {k!r}")
    return (k + WORD_BITS - 1) // WORD_BITS


def check_bits(name: str, bits: np.ndarray) -> np.ndarray:
    """Return ``bits`` as a ``uint8`` array, or raise if any element is not 0 or 1."""
    arr = np.asarray(bits)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer or boolean array of 0/1, not dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must hold only 0 and 1, but {name}{list(idx)} = {arr[idx].item()!r}")
    return arr.astype(np.uint8)


def pack_bits(bits: np.ndarray, *, name: str = "bits") -> np.ndarray:
    """Pack ``{0,1}`` values along the last axis into little-endian ``uint32`` words.

    ``bits`` of shape ``(..., K)`` gives ``uint32`` words of shape ``(..., ceil(K / 32))``.
    """
    arr = check_bits(name, bits)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one axis, not a scalar")
    k = arr.shape[-1]
    n_words = words_for(k)
    pad = n_words * WORD_BITS - k
    if pad:
        arr = np.concatenate([arr, np.zeros(arr.shape[:-1] + (pad,), np.uint8)], axis=-1)
    # np.packbits with bitorder="little" puts element 0 at bit 0 of byte 0; four bytes read as a
    # little-endian uint32 then put element k at bit k % 32 of word k // 32.
    packed = np.packbits(arr, axis=-1, bitorder="little")
    packed = np.ascontiguousarray(packed).view("<u4")
    return packed.astype(np.uint32, copy=False)


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Unpack ``uint32`` words of shape ``(..., W)`` into ``k`` bits ``(..., k)`` as ``uint8``.

    Raises ``ValueError`` if ``W`` is not ``ceil(k / 32)`` or if any padding bit is set.
    """
    arr = np.asarray(words)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"Packed words must be an integer array, not dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("Packed words must have at least one axis, not a scalar")
    if arr.shape[-1] != words_for(k):
        raise ValueError(
            f"{k} bits need {words_for(k)} words on the last axis, not {arr.shape[-1]}")
    if (arr < 0).any() or (arr > 0xFFFF_FFFF).any():
        raise ValueError("Packed words must be in the range [0, 2**32 - 1]")
    le = np.ascontiguousarray(arr.astype("<u4"))
    bits = np.unpackbits(le.view(np.uint8), axis=-1, bitorder="little")
    if (bits[..., k:] != 0).any():
        raise ValueError(f"Padding bits above bit {k} of the last word must be zero")
    return bits[..., :k]
