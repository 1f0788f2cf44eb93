"""Validated parameters of the binary transformer layer and language model, and their file format.

Names follow ``docs/numerics.md``. Weights are ``{0,1}`` arrays of shape ``(out, in)``
(bit 1 means +1). Thresholds may be any integers (that fit int64): ``x >= t`` with ``t`` beyond the
range of ``x`` is "always 1" or "always 0", so each is clamped, exactly, into its meaningful
range: ``[-K, K + 1]`` on a dot product over ``K`` elements, ``[-32768, 32768]`` on the int16
residual stream, ``[-32768, 32767]`` for the context threshold ``tc`` (the context value is
bounded by the sequence length). Scales are signed 8-bit and the shift ``r`` is 0..15; values
outside those are refused. See ``docs/numerics.md`` for why.

A model file is one ``.npz``: weights packed as the spec's little-endian uint32 words, every
other field as integers, plus a ``format`` and ``version`` entry.
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
           "WEIGHT_NAMES"]

FORMAT_VERSION = 1
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1

WEIGHT_NAMES = ("Wq", "Wk", "Wv", "Wo", "W1", "W2")
THRESHOLD_NAMES = ("th_attn", "tq", "tk", "tv", "ta", "tc", "th_ffn", "t1")
SCALE_NAMES = ("so", "s2")
LAYER_NAMES = WEIGHT_NAMES + THRESHOLD_NAMES + SCALE_NAMES + ("r",)


class ModelFileError(ValueError):
    """A model or layer file is damaged, of another format, or does not match what was asked."""


def _weights(owner: str, name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{owner}.{name} must have shape {shape}, not {arr.shape}")
    bits = check_bits(f"{owner}.{name}", arr)
    bits.setflags(write=False)
    return bits


def _integers(owner: str, name: str, value: Any, shape: tuple[int, ...], lo: int, hi: int,
              why: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{owner}.{name} must have shape {shape}, not {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{owner}.{name} must be an integer array, not dtype {arr.dtype}")
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{owner}.{name}{list(idx)} = {int(arr[idx])} is outside [{lo}, {hi}]"
                         f" ({why})")
    out = arr.astype(np.int32)
    out.setflags(write=False)
    return out


def _thresholds(owner: str, name: str, value: Any, shape: tuple[int, ...], lo: int,
                hi: int) -> np.ndarray:
    """Integer thresholds of ``shape``, clamped into ``[lo, hi]`` (exact: beyond the range of
    the compared value every threshold gives the same bit as the nearer end)."""
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{owner}.{name} must have shape {shape}, not {arr.shape}")
    return clamp_thresholds(f"{owner}.{name}", arr, lo, hi).astype(np.int32)


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
    return -k, k + 1, f"a dot product over {k} elements lies in [-{k}, {k}]; clamp beyond it"


RESIDUAL_RANGE = (INT16_MIN, INT16_MAX + 1, "the residual stream is int16; clamp beyond it")
CONTEXT_RANGE = (INT16_MIN, INT16_MAX, "context thresholds are stored as int16")
SCALE_RANGE = (-128, 127, "scales are signed 8-bit")


@dataclass(frozen=True, eq=False)
class LayerParams:
    """Parameters of one transformer layer of the spec, validated at construction.

    Members
    -------
    d_model, heads, d_ff : int
        D, H and F. ``heads`` must divide ``d_model``.
    Wq, Wk, Wv, Wo : uint8 (D, D); W1 : uint8 (F, D); W2 : uint8 (D, F)
        Binary weights as ``{0,1}`` (bit 1 = +1), rows are output channels.
    th_attn, tq, tk, tv, tc, th_ffn : int32 (D,); ta : int32 (H,); t1 : int32 (F,)
        Any integers; clamped into their meaningful ranges (see the module's docstring).
    so, s2 : int32 (D,), each in [-128, 127]; r : int in 0..15
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
    _packed: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = "LayerParams"
        d = check_count(f"{own}.d_model", self.d_model)
        h = check_count(f"{own}.heads", self.heads)
        f = check_count(f"{own}.d_ff", self.d_ff)
        if d % h:
            raise ValueError(f"{own}.heads must divide d_model = {d}, not {h}")
        dh = d // h
        shapes = {"Wq": (d, d), "Wk": (d, d), "Wv": (d, d), "Wo": (d, d), "W1": (f, d),
                  "W2": (d, f)}
        for name, shape in shapes.items():
            object.__setattr__(self, name, _weights(own, name, getattr(self, name), shape))
        ranges = {
            "th_attn": ((d,), RESIDUAL_RANGE), "tq": ((d,), _dot_range(d)),
            "tk": ((d,), _dot_range(d)), "tv": ((d,), _dot_range(d)),
            "ta": ((h,), _dot_range(dh)), "tc": ((d,), CONTEXT_RANGE),
            "th_ffn": ((d,), RESIDUAL_RANGE), "t1": ((f,), _dot_range(d)),
            "so": ((d,), SCALE_RANGE), "s2": ((d,), SCALE_RANGE),
        }
        for name, (shape, (lo, hi, why)) in ranges.items():
            if name in THRESHOLD_NAMES:
                value = _thresholds(own, name, getattr(self, name), shape, lo, hi)
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

    def packed(self, name: str) -> np.ndarray:
        """Return weight ``name`` packed into uint32 words along its input axis (cached)."""
        if name not in WEIGHT_NAMES:
            raise KeyError(f"{name!r} is not a weight; weights are {', '.join(WEIGHT_NAMES)}")
        if name not in self._packed:
            words = pack_bits(getattr(self, name))
            words.setflags(write=False)
            self._packed[name] = words
        return self._packed[name]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, heads: int) -> LayerParams:
        """Build from a dict keyed by the spec's parameter names (``Wq`` ... ``W2``, ``r``)."""
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
                   **{n: d[n] for n in LAYER_NAMES})

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a dict keyed by the spec's names (inverse of from_dict)."""
        return {n: getattr(self, n) for n in LAYER_NAMES}

    def _entries(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}heads": np.int64(self.heads), f"{prefix}r": np.int64(self.r)}
        for n in WEIGHT_NAMES:
            out[f"{prefix}{n}"] = self.packed(n)
            out[f"{prefix}{n}.bits"] = np.int64(getattr(self, n).shape[1])
        for n in THRESHOLD_NAMES + SCALE_NAMES:
            out[f"{prefix}{n}"] = getattr(self, n)
        return out

    @classmethod
    def _from_entries(cls, z: _Entries, prefix: str) -> LayerParams:
        d: dict[str, Any] = {"r": z.integer(f"{prefix}r")}
        for n in WEIGHT_NAMES:
            d[n] = z.unpack(f"{prefix}{n}", z.integer(f"{prefix}{n}.bits"))
        for n in THRESHOLD_NAMES + SCALE_NAMES:
            d[n] = z.get(f"{prefix}{n}")
        heads = z.integer(f"{prefix}heads")
        return z.build(lambda: cls.from_dict(d, heads=heads))

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
    """The spec's language model: embedding, L layers, binary LM head.

    Members
    -------
    E : int16 (V, D)
        Token embedding table (used on the host).
    layers : tuple[LayerParams, ...]
        All of the same D.
    th_out : int32 (D,)
        Thresholds that binarise the final residual stream (clamped into [-32768, 32768]).
    Wout : uint8 (V, D)
        Binary LM head; ``logits = (X >= th_out) . Wout^T``.
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

    def __post_init__(self) -> None:
        own = "ModelParams"
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
        object.__setattr__(self, "th_out", _thresholds(own, "th_out", self.th_out, (d,), lo, hi))
        object.__setattr__(self, "Wout", _weights(own, "Wout", self.Wout, (v, d)))
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

    def save(self, path: str | Path) -> None:
        """Write the whole model to one ``.npz`` file."""
        entries: dict[str, np.ndarray] = {
            "n_layers": np.int64(len(self.layers)), "E": self.E, "th_out": self.th_out,
            "Wout": pack_bits(self.Wout), "Wout.bits": np.int64(self.d_model),
            "charset": np.str_(self.charset), "logit_scale": np.float64(self.logit_scale)}
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
        wout = z.unpack("Wout", z.integer("Wout.bits"))
        # Optional entries (files written before they existed lack them).
        charset = z.text("charset") if "charset" in z.data else ""
        scale = z.real("logit_scale") if "logit_scale" in z.data else 1.0
        model = z.build(lambda: cls(E=z.get("E"), layers=layers, th_out=z.get("th_out"),
                                    Wout=wout, charset=charset, logit_scale=scale))
        z.finish()
        return model


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
        if version != FORMAT_VERSION:
            raise ModelFileError(f"{path}: format version {version} is not supported"
                                 f" (this onebit reads version {FORMAT_VERSION})")
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
