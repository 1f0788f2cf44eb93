"""Validated parameters of the transformer layer and language model, and their file format.

Names follow ``docs/numerics.md`` (version 2: hybrid precision). Each layer has its activation
bits A (1 to 4; ``L = 2^A - 1`` levels above 0) and its weight kind: binary weights are ``{0,1}``
arrays of shape ``(out, in)`` (bit 1 means +1), ternary ones ``{-1, 0, 1}``. A multi-threshold
has shape ``(n, L)``, non-decreasing along its last axis; with A = 1 a plain ``(n,)`` vector is
also taken. Thresholds may be any integers (that fit int64): ``x >= t`` with ``t`` beyond the
range of ``x`` is "always 1" or "always 0", so each is clamped, exactly, into its meaningful
range: ``[-L K, L K + 1]`` on a product over ``K`` elements (``ta``: ``[-L^2 Dh, L^2 Dh + 1]``),
``[-32768, 32768]`` on the int16 residual stream, ``[-32768 L, 32767 L]`` for the context
threshold ``tc`` (the context value is bounded by L times the sequence length). Scales are signed
8-bit and the shift ``r`` is 0..15; values outside those are refused.

A model file is one ``.npz``: weights packed as the numerics' little-endian uint32 words (a
ternary matrix as its two planes), every other field as integers, plus a ``format`` and
``version`` entry. Version 1 files (every layer A = 1 with binary weights) load unchanged;
:meth:`save` writes version 2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checks import check_count
from .npz_file import read_npz
from .packing import check_bits, pack_bits, unpack_bits

__all__ = ["LayerParams", "ModelParams", "ModelFileError", "FORMAT_VERSION", "clamp_thresholds",
           "WEIGHT_NAMES", "WEIGHT_KINDS", "check_levels", "check_weights", "multi_thresholds",
           "weight_planes"]

#: The version :meth:`ModelParams.save` writes; every version up to it loads.
FORMAT_VERSION = 2
#: Weight kinds: binary (one plane) and ternary (two planes, ``P_lo = [w >= 0]``,
#: ``P_hi = [w > 0]``).
WEIGHT_KINDS = ("binary", "ternary")
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1

WEIGHT_NAMES = ("Wq", "Wk", "Wv", "Wo", "W1", "W2")
THRESHOLD_NAMES = ("th_attn", "tq", "tk", "tv", "ta", "tc", "th_ffn", "t1")
SCALE_NAMES = ("so", "s2")
LAYER_NAMES = WEIGHT_NAMES + THRESHOLD_NAMES + SCALE_NAMES + ("r",)


class ModelFileError(ValueError):
    """A model or layer file is damaged, of another format, or does not match what was asked."""


def _refuse_first(name: str, arr: np.ndarray, bad: np.ndarray, what: str) -> None:
    """``ValueError`` naming the first element where ``bad`` holds: "name[i, j] = v what"."""
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}{list(idx)} = {arr[idx].item()!r} {what}")


def check_activation_bits(name: str, bits: object) -> int:
    """Activation bits A: 1, 2, 3 or 4."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or \
            not 1 <= bits <= 4:
        raise ValueError(f"{name} must be 1, 2, 3 or 4 (activation bits), not {bits!r}")
    return int(bits)


def check_kind(name: str, kind: object) -> str:
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"{name} must be 'binary' or 'ternary', not {kind!r}")
    return str(kind)


def check_weights(name: str, value: Any, kind: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Weights of ``kind`` and ``shape`` (``None`` matches any size): binary as ``uint8``
    ``{0, 1}``, ternary as ``int8`` ``{-1, 0, 1}``; read-only."""
    check_kind("weights", kind)
    arr = np.asarray(value)
    if arr.ndim != len(shape) or any(s is not None and s != a
                                     for s, a in zip(shape, arr.shape, strict=True)):
        want = ", ".join("*" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({want}{',' * (len(shape) == 1)}), not "
                         f"{arr.shape}")
    if kind == "binary":
        out = check_bits(name, arr)
    else:
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be an integer array of -1, 0 and +1 (ternary "
                            f"weights), not dtype {arr.dtype}")
        _refuse_first(name, arr, (arr < -1) | (arr > 1), "is not a ternary weight (-1, 0 or +1)")
        out = arr.astype(np.int8)
    out.setflags(write=False)
    return out


def _weights(owner: str, name: str, value: Any, shape: tuple[int, ...],
             kind: str = "binary") -> np.ndarray:
    return check_weights(f"{owner}.{name}", value, kind, shape)


def weight_planes(w: np.ndarray, kind: str) -> np.ndarray:
    """Packed binary planes of a weight matrix (N, K): (1, N, words) for binary weights,
    (2, N, words) for ternary (``P_lo = [w >= 0]``, ``P_hi = [w > 0]``); read-only."""
    if kind == "binary":
        planes = pack_bits(w)[None]
    else:
        planes = np.stack([pack_bits(w >= 0), pack_bits(w > 0)])
    planes.setflags(write=False)
    return planes


def check_levels(name: str, value: Any, bits: int) -> np.ndarray:
    """Activation levels of ``bits`` bits (integers in ``0..2^bits - 1``) as ``int64``."""
    bits = check_activation_bits("bits", bits)
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer levels, not dtype {arr.dtype}")
    top = (1 << bits) - 1
    _refuse_first(name, arr, (arr < 0) | (arr > top), f"is not a {bits}-bit level (0..{top})")
    return arr.astype(np.int64)


def multi_thresholds(name: str, value: Any, n: int, levels: int | None = None,
                     lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """Thresholds of ``n`` channels as int64: ``(n,)`` for one level, ``(n, L)`` for ``L``
    levels, non-decreasing along the last axis, clamped into ``[lo, hi]`` if given. ``levels``
    None takes any ``L = 2^A - 1`` (A = 1..4); a ``(n,)`` vector or ``(n, 1)`` is one level
    and comes back as ``(n,)``."""
    arr = np.asarray(value)
    one = arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1:] == (1,))
    allowed = (1, 3, 7, 15) if levels is None else (levels,)
    if arr.ndim == 1 and arr.shape == (n,) and 1 in allowed:
        pass
    elif arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] in allowed:
        if one:
            arr = arr[:, 0]
    else:
        want = " or ".join(f"({n},)" if lv == 1 else f"({n}, {lv})" for lv in allowed)
        why = f" for {levels} levels" if levels not in (None, 1) else ""
        raise ValueError(f"{name} must have shape {want}{why}, not {arr.shape}")
    lo = -(1 << 63) if lo is None else lo
    hi = (1 << 63) - 1 if hi is None else hi
    t = clamp_thresholds(name, arr, lo, hi)
    if t.ndim == 2:
        bad = np.argwhere(np.diff(t, axis=1) < 0)
        if bad.size:
            i = int(bad[0][0])
            raise ValueError(f"{name}[{i}] = {t[i].tolist()} is not sorted: a channel's "
                             f"thresholds must be non-decreasing")
    return t


def _integers(owner: str, name: str, value: Any, shape: tuple[int, ...], lo: int, hi: int,
              why: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{owner}.{name} must have shape {shape}, not {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{owner}.{name} must be an integer array, not dtype {arr.dtype}")
    _refuse_first(f"{owner}.{name}", arr, (arr < lo) | (arr > hi),
                  f"is outside [{lo}, {hi}] ({why})")
    out = arr.astype(np.int32)
    out.setflags(write=False)
    return out


def _thresholds(owner: str, name: str, value: Any, shape: tuple[int, ...], lo: int,
                hi: int, levels: int = 1) -> np.ndarray:
    """Integer thresholds of ``n = shape[0]`` channels and ``levels`` levels, clamped into
    ``[lo, hi]`` (exact: beyond the range of the compared value every threshold gives the same
    level as the nearer end); ``(n,)`` for one level, ``(n, levels)`` for more."""
    t = multi_thresholds(f"{owner}.{name}", value, shape[0], levels, lo, hi).astype(np.int32)
    t.setflags(write=False)
    return t


def clamp_thresholds(name: str, value: Any, lo: int, hi: int) -> np.ndarray:
    """``value`` as int64 clamped into ``[lo, hi]``; ``TypeError`` unless it holds integers,
    ``ValueError`` if one does not fit int64."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in arr.flat):
            big = next(v for v in arr.flat if not -(1 << 63) <= v < 1 << 63)
            raise ValueError(f"{name} holds {big}, which does not fit int64")
        raise TypeError(f"{name} must be integers, not dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and arr.max() >= 1 << 63:
        raise ValueError(f"{name} holds {int(arr.max())}, which does not fit int64")
    out = np.clip(arr.astype(np.int64), lo, hi)
    out.setflags(write=False)
    return out


def _dot_range(k: int) -> tuple[int, int, str]:
    return -k, k + 1, f"a product over {k} elements lies in [-{k}, {k}]; clamp beyond it"


RESIDUAL_RANGE = (INT16_MIN, INT16_MAX + 1, "the residual stream is int16; clamp beyond it")
SCALE_RANGE = (-128, 127, "scales are signed 8-bit")


def _context_range(levels: int) -> tuple[int, int, str]:
    """The context value is a sum of at most 32766 values in [-L, L] (the KV cache's largest
    capacity), so ``[L * -32768, L * 32767]`` holds every meaningful threshold."""
    return levels * INT16_MIN, levels * INT16_MAX, "the context is bounded by the sequence"


@dataclass(frozen=True, eq=False)
class LayerParams:
    """Parameters of one transformer layer, validated at construction.

    Members
    -------
    d_model, heads, d_ff : int
        D, H and F. ``heads`` must divide ``d_model``.
    Wq, Wk, Wv, Wo : (D, D); W1 : (F, D); W2 : (D, F)
        Weights, rows are output channels: binary ``uint8`` ``{0,1}`` (bit 1 = +1) or ternary
        ``int8`` ``{-1, 0, 1}``.
    th_attn, tq, tk, tv, tc, th_ffn : int32 (D, L); t1 : int32 (F, L); ta : int32 (H,)
        Multi-thresholds (``(n,)`` when L = 1); any integers, clamped into their meaningful
        ranges (see the module's docstring).
    so, s2 : int32 (D,), each in [-128, 127]; r : int in 0..15
    bits : int
        Activation bits A (1..4) of every quantiser of the layer; ``L = 2^A - 1``.
    weights : str
        ``"binary"`` or ``"ternary"``, for all six matrices.
    """

    d_model: int
    heads: int
    d_ff: int
    Wq: np.ndarray
    Wk: np.ndarray
    Wv: np.ndarray
    Wo: np.ndarray
    W1: np.ndarray
    W2: np.ndarray
    th_attn: np.ndarray
    tq: np.ndarray
    tk: np.ndarray
    tv: np.ndarray
    ta: np.ndarray
    tc: np.ndarray
    th_ffn: np.ndarray
    t1: np.ndarray
    so: np.ndarray
    s2: np.ndarray
    r: int
    bits: int = 1
    weights: str = "binary"
    _packed: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = "LayerParams"
        a = check_activation_bits(f"{own}.bits", self.bits)
        object.__setattr__(self, "bits", a)
        kind = check_kind(f"{own}.weights", self.weights)
        lv = (1 << a) - 1
        d = check_count(f"{own}.d_model", self.d_model)
        h = check_count(f"{own}.heads", self.heads)
        f = check_count(f"{own}.d_ff", self.d_ff)
        if d % h:
            raise ValueError(f"{own}.heads must divide d_model = {d}, not {h}")
        dh = d // h
        shapes = {"Wq": (d, d), "Wk": (d, d), "Wv": (d, d), "Wo": (d, d), "W1": (f, d),
                  "W2": (d, f)}
        for name, shape in shapes.items():
            object.__setattr__(self, name, _weights(own, name, getattr(self, name), shape,
                                                    kind))
        ranges = {
            "th_attn": ((d,), RESIDUAL_RANGE), "tq": ((d,), _dot_range(lv * d)),
            "tk": ((d,), _dot_range(lv * d)), "tv": ((d,), _dot_range(lv * d)),
            "ta": ((h,), _dot_range(lv * lv * dh)), "tc": ((d,), _context_range(lv)),
            "th_ffn": ((d,), RESIDUAL_RANGE), "t1": ((f,), _dot_range(lv * d)),
            "so": ((d,), SCALE_RANGE), "s2": ((d,), SCALE_RANGE),
        }
        for name, (shape, (lo, hi, why)) in ranges.items():
            if name == "ta":                  # one integer per head: the mask stays binary
                value = _thresholds(own, name, getattr(self, name), shape, lo, hi, 1)
            elif name in THRESHOLD_NAMES:
                value = _thresholds(own, name, getattr(self, name), shape, lo, hi, lv)
            else:
                value = _integers(own, name, getattr(self, name), shape, lo, hi, why)
            object.__setattr__(self, name, value)
        r = self.r
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r <= 15:
            raise ValueError(f"{own}.r must be an integer shift in 0..15, not {r!r}")
        object.__setattr__(self, "r", int(r))

    @property
    def head_dim(self) -> int:
        """Dh = D / H."""
        return self.d_model // self.heads

    @property
    def levels(self) -> int:
        """L = 2^A - 1."""
        return (1 << self.bits) - 1

    def planes(self, name: str) -> np.ndarray:
        """Weight ``name`` as packed binary planes (1 or 2, N, words) (cached)."""
        if name not in WEIGHT_NAMES:
            raise KeyError(f"{name!r} is not a weight; weights are {', '.join(WEIGHT_NAMES)}")
        if name not in self._packed:
            self._packed[name] = weight_planes(getattr(self, name), self.weights)
        return self._packed[name]

    def packed(self, name: str) -> np.ndarray:
        """Binary weight ``name`` packed into uint32 words along its input axis (cached)."""
        if self.weights != "binary":
            raise ValueError(f"{name} holds ternary weights, two planes: use planes({name!r})")
        return self.planes(name)[0]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, heads: int, bits: int = 1,
                  weights: str = "binary") -> LayerParams:
        """Build from a dict keyed by the spec's parameter names (``Wq`` ... ``W2``, ``r``),
        with the layer's activation ``bits`` and weight kind."""
        if not isinstance(d, dict):
            raise TypeError(f"LayerParams.from_dict needs a dict, not {type(d).__name__}")
        missing = [n for n in LAYER_NAMES if n not in d]
        if missing:
            raise ValueError(f"LayerParams.from_dict is missing {', '.join(missing)}")
        unknown = sorted(set(d) - set(LAYER_NAMES))
        if unknown:
            raise ValueError(f"LayerParams.from_dict got unknown keys {', '.join(unknown)}")
        wq, w1 = np.asarray(d["Wq"]), np.asarray(d["W1"])
        if wq.ndim != 2 or w1.ndim != 2:
            raise ValueError(f"LayerParams.Wq and W1 must be 2-D (out, in), not {wq.shape} and"
                             f" {w1.shape}")
        return cls(d_model=wq.shape[0], heads=heads, d_ff=w1.shape[0],
                   **{n: d[n] for n in LAYER_NAMES}, bits=bits, weights=weights)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a dict keyed by the spec's names (inverse of from_dict)."""
        return {n: getattr(self, n) for n in LAYER_NAMES}

    def _entries(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}heads": np.int64(self.heads), f"{prefix}r": np.int64(self.r),
               f"{prefix}bits": np.int64(self.bits), f"{prefix}weights": np.str_(self.weights)}
        for n in WEIGHT_NAMES:
            out.update(_matrix_entries(f"{prefix}{n}", getattr(self, n), self.weights))
        for n in THRESHOLD_NAMES + SCALE_NAMES:
            out[f"{prefix}{n}"] = getattr(self, n)
        return out

    @classmethod
    def _from_entries(cls, z: _Entries, prefix: str) -> LayerParams:
        d: dict[str, Any] = {"r": z.integer(f"{prefix}r")}
        bits, kind = 1, "binary"            # version 1: every layer 1-bit and binary
        if z.version >= 2:
            bits, kind = z.integer(f"{prefix}bits"), z.text(f"{prefix}weights")
            if kind not in WEIGHT_KINDS:
                raise ModelFileError(f"{z.path}: entry '{prefix}weights' = {kind!r} is not "
                                     f"'binary' or 'ternary'")
        for n in WEIGHT_NAMES:
            d[n] = _matrix_from_entries(z, f"{prefix}{n}", kind)
        for n in THRESHOLD_NAMES + SCALE_NAMES:
            d[n] = z.get(f"{prefix}{n}")
        heads = z.integer(f"{prefix}heads")
        return z.build(lambda: cls.from_dict(d, heads=heads, bits=bits, weights=kind))

    def save(self, path: str | Path) -> None:
        """Write the layer to one ``.npz`` file."""
        _save(path, "onebit-layer", self._entries(""))

    @classmethod
    def load(cls, path: str | Path) -> LayerParams:
        """Read a layer written by :meth:`save`; raise :class:`ModelFileError` if it is bad."""
        z = _Entries.open(path, "onebit-layer")
        layer = cls._from_entries(z, "")
        z.finish()
        return layer


@dataclass(frozen=True, eq=False)
class ModelParams:
    """The language model: embedding, optional position table, layers, LM head.

    Members
    -------
    E : int16 (V, D)
        Token embedding table (used on the host).
    layers : tuple[LayerParams, ...]
        All of the same D; each with its own activation bits and weight kind.
    th_out : int32 (D, L) (or (D,) with one level)
        Multi-thresholds that quantise the final residual stream to the head's activations.
    Wout : (V, D)
        The LM head's weights (binary or ternary); ``logits = prod(hat(MT(X, th_out)), Wout)``.
    head_bits, head_weights : int, str
        The head's activation bits and weight kind.
    P : int16 (T_ctx, D) or None
        Optional position table: the input row at position t is ``sat16(E[token] + P[t])``;
        positions from ``T_ctx`` on are refused.
    charset : str
        Optional: the character of each token id (``len(charset) == V``) for a character model.
    logit_scale : float
        Optional: the softmax temperature the model was trained with (``softmax(logits *
        logit_scale)``); it never changes the argmax, only the reported loss.
    """

    E: np.ndarray
    layers: tuple
    th_out: np.ndarray
    Wout: np.ndarray
    charset: str = ""
    logit_scale: float = 1.0
    head_bits: int = 1
    head_weights: str = "binary"
    P: np.ndarray | None = None
    _planes: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = "ModelParams"
        a = check_activation_bits(f"{own}.head_bits", self.head_bits)
        object.__setattr__(self, "head_bits", a)
        kind = check_kind(f"{own}.head_weights", self.head_weights)
        e = np.asarray(self.E)
        if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
            raise ValueError(f"{own}.E must be a non-empty 2-D (V, D) array, not shape {e.shape}")
        v, d = e.shape
        object.__setattr__(self, "E", _integers(own, "E", e, (v, d), INT16_MIN, INT16_MAX,
                                                "embeddings are int16").astype(np.int16))
        layers = tuple(self.layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerParams):
                raise TypeError(f"{own}.layers[{i}] must be LayerParams, not "
                                f"{type(layer).__name__}")
            if layer.d_model != d:
                raise ValueError(f"{own}.layers[{i}].d_model must equal the embedding width {d},"
                                 f" not {layer.d_model}")
        object.__setattr__(self, "layers", layers)
        lo, hi, _ = RESIDUAL_RANGE
        object.__setattr__(self, "th_out", _thresholds(own, "th_out", self.th_out, (d,), lo, hi,
                                                       (1 << a) - 1))
        object.__setattr__(self, "Wout", _weights(own, "Wout", self.Wout, (v, d), kind))
        if self.P is not None:
            pos = np.asarray(self.P)
            if pos.ndim != 2 or pos.shape[1] != d or pos.shape[0] == 0:
                raise ValueError(f"{own}.P must be a (T_ctx, {d}) position table, not shape "
                                 f"{pos.shape}")
            object.__setattr__(self, "P", _integers(own, "P", pos, pos.shape, INT16_MIN,
                                                    INT16_MAX, "positions are int16"
                                                    ).astype(np.int16))
        if not isinstance(self.charset, str) or (self.charset and len(self.charset) != v):
            raise ValueError(f"{own}.charset must be empty or a string of {v} characters (one per"
                             f" token), not {self.charset!r:.60}")
        scale = self.logit_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) \
                or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"{own}.logit_scale must be a positive finite number, not {scale!r}")
        object.__setattr__(self, "logit_scale", float(scale))

    @property
    def vocab(self) -> int:
        """V, the number of tokens."""
        return self.E.shape[0]

    @property
    def d_model(self) -> int:
        """D, the model width."""
        return self.E.shape[1]

    def head_planes(self) -> np.ndarray:
        """``Wout`` as packed binary planes (1 or 2, V, words) (cached)."""
        if "Wout" not in self._planes:
            self._planes["Wout"] = weight_planes(self.Wout, self.head_weights)
        return self._planes["Wout"]

    def save(self, path: str | Path) -> None:
        """Write the whole model to one ``.npz`` file (format version 2)."""
        entries: dict[str, np.ndarray] = {
            "n_layers": np.int64(len(self.layers)), "E": self.E, "th_out": self.th_out,
            "charset": np.str_(self.charset), "logit_scale": np.float64(self.logit_scale),
            "head.bits": np.int64(self.head_bits), "head.weights": np.str_(self.head_weights),
            **_matrix_entries("Wout", self.Wout, self.head_weights)}
        if self.P is not None:
            entries["P"] = self.P
        for i, layer in enumerate(self.layers):
            entries.update(layer._entries(f"layer{i}."))
        _save(path, "onebit-model", entries)

    @classmethod
    def load(cls, path: str | Path) -> ModelParams:
        """Read a model written by :meth:`save`; raise :class:`ModelFileError` if it is bad."""
        z = _Entries.open(path, "onebit-model")
        n = z.integer("n_layers")
        stored = {int(m.group(1)) for k in z.data if (m := re.match(r"layer(\d+)\.", k))}
        if n < 0 or stored != set(range(n)):
            raise ModelFileError(f"{z.path}: entry 'n_layers' = {n} does not match the layers "
                                 f"stored ({', '.join(map(str, sorted(stored))) or 'none'})")
        layers = tuple(LayerParams._from_entries(z, f"layer{i}.") for i in range(n))
        bits, kind = 1, "binary"
        if z.version >= 2:
            bits, kind = z.integer("head.bits"), z.text("head.weights")
            if kind not in WEIGHT_KINDS:
                raise ModelFileError(f"{z.path}: entry 'head.weights' = {kind!r} is not "
                                     f"'binary' or 'ternary'")
        wout = _matrix_from_entries(z, "Wout", kind)
        # Optional entries (files written before they existed lack them).
        charset = z.text("charset") if "charset" in z.data else ""
        scale = z.real("logit_scale") if "logit_scale" in z.data else 1.0
        pos = z.get("P") if "P" in z.data else None
        model = z.build(lambda: cls(E=z.get("E"), layers=layers, th_out=z.get("th_out"),
                                    Wout=wout, charset=charset, logit_scale=scale,
                                    head_bits=bits, head_weights=kind, P=pos))
        z.finish()
        return model


def _matrix_entries(key: str, w: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """A weight matrix's file entries: its packed plane (binary) or planes (ternary: ``key``
    holds ``P_lo``, ``key.hi`` holds ``P_hi``), and ``key.bits``, its K."""
    planes = weight_planes(w, kind)
    out = {key: planes[0], f"{key}.bits": np.int64(w.shape[1])}
    if kind == "ternary":
        out[f"{key}.hi"] = planes[1]
    return out


def _matrix_from_entries(z: _Entries, key: str, kind: str) -> np.ndarray:
    k = z.integer(f"{key}.bits")
    lo = z.unpack(key, k)
    if kind == "binary":
        return lo
    hi = z.unpack(f"{key}.hi", k)
    if (hi > lo).any():
        raise ModelFileError(f"{z.path}: entry '{key}.hi' is damaged (a weight above its "
                             f"lower plane: P_hi = 1 needs P_lo = 1)")
    return lo.astype(np.int8) + hi.astype(np.int8) - 1


def _save(path: str | Path, fmt: str, entries: dict[str, np.ndarray]) -> None:
    """Write the archive to exactly ``path`` (no ``.npz`` appended), through a temporary file
    beside it that replaces ``path`` only once it is complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, format=np.str_(fmt), version=np.int64(FORMAT_VERSION),
                                **entries)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Entries:
    """Reads checked entries from a loaded ``.npz``; every failure names the file and entry."""

    def __init__(self, path: Path, data: dict[str, np.ndarray]):
        self.path, self.data = path, data
        self.used: set[str] = set()
        self.version = FORMAT_VERSION

    @classmethod
    def open(cls, path: str | Path, fmt: str) -> _Entries:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        z = cls(path, read_npz(path, ModelFileError))
        found = z.text("format")
        if found != fmt:
            raise ModelFileError(f"{path}: holds a {found!r}, not a {fmt!r}")
        version = z.integer("version")
        if not 1 <= version <= FORMAT_VERSION:
            raise ModelFileError(f"{path}: format version {version} is not supported"
                                 f" (this onebit reads versions 1 to {FORMAT_VERSION})")
        z.version = version
        return z

    def get(self, key: str) -> np.ndarray:
        if key not in self.data:
            raise ModelFileError(f"{self.path}: entry {key!r} is missing")
        self.used.add(key)
        return self.data[key]

    def _scalar(self, key: str, kinds: str, what: str) -> Any:
        a = self.get(key)
        if a.ndim != 0 or a.dtype.kind not in kinds:
            raise ModelFileError(f"{self.path}: entry {key!r} must be {what}, not a "
                                 f"{a.dtype} array of shape {a.shape}")
        return a.item()

    def integer(self, key: str) -> int:
        """A scalar integer entry (a float, even 2.0, is damage)."""
        return int(self._scalar(key, "iu", "one integer"))

    def real(self, key: str) -> float:
        return float(self._scalar(key, "f", "one floating-point number"))

    def text(self, key: str) -> str:
        return str(self._scalar(key, "U", "one string"))

    def finish(self) -> None:
        """Raise if the file holds entries that nothing read (damage, or another format)."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ModelFileError(f"{self.path}: unknown entries {', '.join(unknown[:8])}")

    def unpack(self, key: str, k: int) -> np.ndarray:
        try:
            return unpack_bits(self.get(key), k)
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: entry {key!r} is damaged ({exc})") from exc

    def build(self, make):
        try:
            return make()
        except ModelFileError:
            raise
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: {exc}") from exc
