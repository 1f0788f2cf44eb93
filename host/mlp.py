"""Quantized MLPs: a stack of the numerics' ``Linear`` layers (``MLPParams``), and their file.

Each layer has its input's activation bits A, its weight kind (binary ``{0, 1}`` or ternary
``{-1, 0, 1}``, shape ``(N, K)``) and either multi-thresholds ``(N, L')`` (``L' = 2^A' - 1``,
sorted; the next layer's input has A' bits) or, for the last layer only, none: its outputs are
then the integers ``prod(hat(q), W[n]) + offset[n]`` (``offset``: integers folded from the
network's quantizer zero-points, zero by default; see ``docs/import.md``).

The input quantizer (``InputQuantizer``) turns the network's raw float inputs into the first
layer's levels exactly as QONNX's ``Quant`` (or ``BipolarQuant``) computes them, in float32.

A file is one ``.npz`` (format ``onebit-mlp``, in the model files' format family): weights
packed as the numerics' uint32 words (ternary as two planes), everything else as plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .params import (
    ModelFileError,
    _Entries,
    _matrix_entries,
    _matrix_from_entries,
    _save,
    check_activation_bits,
    check_kind,
    check_weights,
    multi_thresholds,
)

__all__ = ["MLPLayer", "MLPParams", "InputQuantizer", "ROUNDING_MODES"]

#: QONNX ``Quant`` rounding modes, as QONNX's executor computes them.
ROUNDING_MODES = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)), "DOWN": np.fix,
    "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
    "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
}


def int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """The integers a ``Quant`` of ``bits`` bits produces: ``(min, max)`` (QONNX's rule)."""
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


@dataclass(frozen=True, eq=False)
class InputQuantizer:
    """How raw float inputs become the first layer's levels.

    ``kind="bipolar"``: QONNX's ``BipolarQuant``, level ``[x >= 0]`` (1 bit). ``kind="int"``:
    QONNX's ``Quant`` of ``bits`` bits: ``v = round(clip(x / scale + zeropt, min, max))`` in
    float32 (``rounding`` one of ``ROUNDING_MODES``), and the level is ``v - min``. ``scale``
    and ``zeropt`` are float32 scalars or one per input feature.
    """

    kind: str = "bipolar"
    bits: int = 1
    scale: Any = 1.0
    zeropt: Any = 0.0
    signed: bool = True
    narrow: bool = False
    rounding: str = "ROUND"

    def __post_init__(self) -> None:
        own = "InputQuantizer"
        if self.kind not in ("bipolar", "int"):
            raise ValueError(f"{own}.kind must be 'bipolar' or 'int', not {self.kind!r}")
        bits = check_activation_bits(f"{own}.bits", self.bits)
        if self.kind == "bipolar" and bits != 1:
            raise ValueError(f"{own}: a bipolar quantizer has 1 bit, not {bits}")
        if self.kind == "int" and bits == 1:
            raise ValueError(f"{own}: a 1-bit quantizer must be bipolar (kind='bipolar')")
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(f"{own}.rounding must be one of {', '.join(ROUNDING_MODES)}, not "
                             f"{self.rounding!r}")
        for name in ("scale", "zeropt"):
            v = np.asarray(getattr(self, name), np.float32)
            if v.ndim > 1 or not np.isfinite(v).all():
                raise ValueError(f"{own}.{name} must be a finite scalar or vector, not {v!r}")
            object.__setattr__(self, name, v)
        if (self.scale <= 0).any():
            raise ValueError(f"{own}.scale must be positive, not {self.scale!r}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "narrow", bool(self.narrow))

    @property
    def span(self) -> tuple[int, int]:
        """The integers ``(min, max)`` of the quantizer (``(0, 1)`` for bipolar levels)."""
        return (0, 1) if self.kind == "bipolar" else int_range(self.bits, self.signed,
                                                               self.narrow)

    def levels(self, x: Any) -> np.ndarray:
        """Raw inputs ``(T, K)`` (finite floats) as ``int64`` levels, exactly as QONNX."""
        arr = np.asarray(x)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"inputs must be numbers, not dtype {arr.dtype}")
        arr = arr.astype(np.float32)
        if arr.ndim != 2 or 0 in arr.shape:
            raise ValueError(f"inputs must be 2-D (rows, features) and not empty, not shape "
                             f"{arr.shape}")
        if not np.isfinite(arr).all():
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"inputs{list(idx)} = {arr[idx]} is not a finite number")
        for name in ("scale", "zeropt"):
            v = getattr(self, name)
            if v.ndim == 1 and v.shape[0] != arr.shape[1]:
                raise ValueError(f"inputs have {arr.shape[1]} features but the quantizer's "
                                 f"{name} has {v.shape[0]}")
        if self.kind == "bipolar":
            return (arr >= 0).astype(np.int64)
        lo, hi = self.span
        y = arr / self.scale + self.zeropt
        y = np.where(y > hi, np.float32(hi), y)
        y = np.where(y < lo, np.float32(lo), y)
        return ROUNDING_MODES[self.rounding](y).astype(np.int64) - lo


@dataclass(frozen=True, eq=False)
class MLPLayer:
    """One ``Linear`` of an MLP: weights ``w`` (N, K), the input's ``bits`` and the weight
    kind, and multi-thresholds ``(N, L')`` or ``None`` (then integer outputs plus ``offset``)."""

    w: Any
    bits: int = 1
    weights: str = "binary"
    thresholds: Any = None
    offset: Any = None

    def __post_init__(self) -> None:
        own = "MLPLayer"
        bits = check_activation_bits(f"{own}.bits", self.bits)
        kind = check_kind(f"{own}.weights", self.weights)
        w = check_weights(f"{own}.w", self.w, kind, (None, None))
        if 0 in w.shape:
            raise ValueError(f"{own}.w must not be empty, not shape {w.shape}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "w", w)
        n, k = w.shape
        span = ((1 << bits) - 1) * k
        if self.thresholds is not None:
            if self.offset is not None:
                raise ValueError(f"{own}: an offset belongs to a layer without thresholds "
                                 f"(its integers); fold it into the thresholds")
            t = multi_thresholds(f"{own}.thresholds", self.thresholds, n, lo=-span - 1,
                                 hi=span + 1)
            object.__setattr__(self, "thresholds", t.reshape(n, -1))
        else:
            off = np.zeros(n, np.int64) if self.offset is None else np.asarray(self.offset)
            if off.shape != (n,) or not np.issubdtype(off.dtype, np.integer):
                raise ValueError(f"{own}.offset must be {n} integers, not {off.dtype} of shape "
                                 f"{off.shape}")
            if np.abs(off.astype(np.int64)).max(initial=0) > 1 << 40:
                raise ValueError(f"{own}.offset holds {int(np.abs(off).max())}, beyond 2^40")
            object.__setattr__(self, "offset", off.astype(np.int64))

    @property
    def n(self) -> int:
        return self.w.shape[0]

    @property
    def k(self) -> int:
        return self.w.shape[1]

    @property
    def out_bits(self) -> int | None:
        """The output's activation bits, or None for integer outputs."""
        if self.thresholds is None:
            return None
        return int(self.thresholds.shape[1]).bit_length()


@dataclass(frozen=True, eq=False)
class MLPParams:
    """A quantized MLP: ``layers`` (each layer's outputs are the next one's input levels, so
    its ``out_bits`` equals the next one's ``bits``; only the last may lack thresholds) and the
    ``input`` quantizer for raw float inputs (None: inputs are levels)."""

    layers: tuple
    input: InputQuantizer | None = None
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = "MLPParams"
        layers = tuple(self.layers)
        if not layers:
            raise ValueError(f"{own} needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, MLPLayer):
                raise TypeError(f"{own}.layers[{i}] must be an MLPLayer, not "
                                f"{type(layer).__name__}")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
            if a.thresholds is None:
                raise ValueError(f"{own}.layers[{i}] has no thresholds: only the last layer "
                                 f"may give integers")
            if b.k != a.n:
                raise ValueError(f"{own}.layers[{i + 1}] takes K = {b.k} inputs but "
                                 f"layers[{i}] gives {a.n}")
            if b.bits != a.out_bits:
                raise ValueError(f"{own}.layers[{i + 1}] takes {b.bits}-bit inputs but "
                                 f"layers[{i}]'s thresholds give {a.out_bits}-bit levels")
        if self.input is not None:
            if not isinstance(self.input, InputQuantizer):
                raise TypeError(f"{own}.input must be an InputQuantizer or None, not "
                                f"{type(self.input).__name__}")
            if self.input.bits != layers[0].bits:
                raise ValueError(f"{own}.input gives {self.input.bits}-bit levels but "
                                 f"layers[0] takes {layers[0].bits}-bit inputs")
            lo, hi = self.input.span
            if hi - lo > (1 << layers[0].bits) - 1:
                raise ValueError(f"{own}.input gives {hi - lo + 1} levels, more than "
                                 f"{layers[0].bits} bits hold")
        object.__setattr__(self, "layers", layers)

    def levels(self, x: Any) -> np.ndarray:
        """The first layer's levels: floats through the input quantizer; integers are levels
        already (checked against the first layer's bits)."""
        from .params import check_levels

        arr = np.asarray(x)
        if np.issubdtype(arr.dtype, np.floating):
            if self.input is None:
                raise ValueError("this MLP has no input quantizer: give integer levels, not "
                                 f"{arr.dtype} values")
            q = self.input.levels(arr)
        else:
            q = check_levels("inputs", arr, self.layers[0].bits)
            if q.ndim != 2:
                raise ValueError(f"inputs must be 2-D (rows, features), not shape {q.shape}")
        if q.shape[1] != self.layers[0].k:
            raise ValueError(f"inputs have {q.shape[1]} features but the first layer takes "
                             f"{self.layers[0].k}")
        return q

    # ------------------------------------------------------------------ file
    def save(self, path: str | Path) -> None:
        """Write the MLP to one ``.npz`` file."""
        e: dict[str, np.ndarray] = {"n_layers": np.int64(len(self.layers))}
        for i, layer in enumerate(self.layers):
            p = f"layer{i}."
            e[f"{p}bits"] = np.int64(layer.bits)
            e[f"{p}weights"] = np.str_(layer.weights)
            e.update(_matrix_entries(f"{p}w", layer.w, layer.weights))
            if layer.thresholds is not None:
                e[f"{p}thresholds"] = layer.thresholds
            else:
                e[f"{p}offset"] = layer.offset
        q = self.input
        if q is not None:
            e.update({"input.kind": np.str_(q.kind), "input.bits": np.int64(q.bits),
                      "input.scale": q.scale, "input.zeropt": q.zeropt,
                      "input.signed": np.int64(q.signed), "input.narrow": np.int64(q.narrow),
                      "input.rounding": np.str_(q.rounding)})
        _save(path, "onebit-mlp", e)

    @classmethod
    def load(cls, path: str | Path) -> MLPParams:
        """Read an MLP written by :meth:`save`; raise :class:`ModelFileError` if it is bad."""
        z = _Entries.open(path, "onebit-mlp")
        n = z.integer("n_layers")
        if not 1 <= n <= 4096:
            raise ModelFileError(f"{z.path}: entry 'n_layers' = {n} is not 1..4096")
        layers = []
        for i in range(n):
            p = f"layer{i}."
            kind = z.text(f"{p}weights")
            if kind not in ("binary", "ternary"):
                raise ModelFileError(f"{z.path}: entry '{p}weights' = {kind!r} is not 'binary' "
                                     f"or 'ternary'")
            w = _matrix_from_entries(z, f"{p}w", kind)
            thr = z.get(f"{p}thresholds") if f"{p}thresholds" in z.data else None
            off = z.get(f"{p}offset") if f"{p}offset" in z.data else None
            bits = z.integer(f"{p}bits")
            layers.append(z.build(lambda w=w, bits=bits, kind=kind, thr=thr, off=off: MLPLayer(
                w, bits=bits, weights=kind, thresholds=thr, offset=off)))
        quant = None
        if "input.kind" in z.data:
            quant = z.build(lambda: InputQuantizer(
                kind=z.text("input.kind"), bits=z.integer("input.bits"),
                scale=_real_array(z, "input.scale"), zeropt=_real_array(z, "input.zeropt"),
                signed=bool(z.integer("input.signed")), narrow=bool(z.integer("input.narrow")),
                rounding=z.text("input.rounding")))
        model = z.build(lambda: cls(tuple(layers), quant))
        z.finish()
        return model


def _real_array(z: _Entries, key: str) -> np.ndarray:
    a = z.get(key)
    if a.dtype.kind != "f" or a.ndim > 1:
        raise ModelFileError(f"{z.path}: entry {key!r} must be a float scalar or vector, not a "
                             f"{a.dtype} array of shape {a.shape}")
    return a
