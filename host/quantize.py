"""Quantize float weights (``.npz``) into a model or layer file (the library behind
``onebit quantize``; NumPy only).

Input entries (``(out, in)`` matrices, the numerics' names):

- A layer: ``Wq Wk Wv Wo W1 W2`` and ``heads``. A model: ``E`` (V, D), ``Wout`` (V, D), and each
  layer's entries prefixed ``layer0.``, ``layer1.`` ...
- Each threshold site (``th_attn tq tk tv tc th_ffn t1``, and the model's ``th_out``) comes
  either as batch-norm statistics ``<site>.gamma .beta .mean .var`` (folded, FINN style; a
  negative gamma negates the producing weight row for ``tq tk tv t1`` and negates the reading
  weights' column for the others), or as thresholds ``<site>`` (``x >= t``, rounded up; (n, L)
  for L levels), or not at all (the quantiser's own boundaries). ``<site>.step``: the step of
  the A-bit quantiser after the site (its level q stands for ``step * (2q - L)``; default 1).
  ``ta`` (per head) as thresholds, statistics or absent. ``eps`` (default 1e-5).
- ``so``, ``s2`` float scales (default 1.0); with the steps and weight scales folded in they
  become int8 with one shared shift ``r``. ``E`` is rounded to int16 and must fit.

Weights: binary by ``sign``, ``stochastic`` (``seed``) or ``error-feedback``
(:mod:`onebit.host.folding`); ternary by BitNet b1.58's absmean rule, its scale folded into the
thresholds and residual scales. ``bits`` (1..4) is every quantiser's activation bits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .folding import (
    binarize_error_feedback,
    binarize_sign,
    binarize_stochastic,
    fold_batchnorm,
    level_boundaries,
    quantize_scales,
    ternarize_absmean,
)
from .npz_file import read_npz
from .params import INT16_MAX, INT16_MIN, LayerParams, ModelParams

__all__ = ["QuantizeError", "quantize"]

BN_KEYS = ("gamma", "beta", "mean", "var")


class QuantizeError(ValueError):
    """The input file cannot be quantized; the message names the entry and the problem."""


class _Input:
    def __init__(self, path: Path, data: dict[str, np.ndarray]):
        self.path, self.data, self.used = path, data, set()

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> np.ndarray:
        if key not in self.data:
            raise QuantizeError(f"{self.path}: entry {key!r} is missing")
        self.used.add(key)
        return self.data[key]

    def matrix(self, key: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        a = self.get(key)
        if a.ndim != 2:
            raise QuantizeError(f"{self.path}: {key} must be a 2-D (out, in) matrix, not shape "
                                f"{a.shape}")
        if shape is not None and a.shape != shape:
            raise QuantizeError(f"{self.path}: {key} must have shape {shape}, not {a.shape}")
        if 0 in a.shape:
            raise QuantizeError(f"{self.path}: {key} is empty (shape {a.shape})")
        self.real_numbers(key, a)
        if not np.isfinite(a).all():
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise QuantizeError(f"{self.path}: {key}{list(idx)} = {float(a[idx])} is not finite")
        return a.astype(np.float64)

    def real_numbers(self, key: str, a: np.ndarray) -> None:
        """Refuse anything but real numbers (complex values would lose their imaginary part)."""
        if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or
                                       np.issubdtype(a.dtype, np.floating)):
            raise QuantizeError(f"{self.path}: {key} must hold real numbers, not dtype "
                                f"{a.dtype}")

    def eps(self) -> float:
        """The batch norms' epsilon: one finite positive real number (default 1e-5)."""
        if not self.has("eps"):
            return 1e-5
        a = self.get("eps")
        self.real_numbers("eps", a)
        value = float(a) if a.ndim == 0 else None
        if value is None or not np.isfinite(value) or value <= 0:
            raise QuantizeError(f"{self.path}: eps must be one finite positive number, not "
                                f"{a.tolist()!r}")
        return value

    def scalar_int(self, key: str) -> int:
        a = self.get(key)
        if a.ndim != 0 or not np.issubdtype(a.dtype, np.integer):
            raise QuantizeError(f"{self.path}: {key} must be one integer, not {a!r}")
        return int(a)


class _Quantizer:
    """Quantizes one input file's matrices and folds its threshold sites at ``bits`` bits of
    activation and ``weights`` of one kind. Each activation quantiser (the output of a
    threshold site) has a step: its level ``q`` stands for ``step * (2q - L)`` in the float
    network (``<site>.step``, default 1); a ternary matrix stands for ``mean|w| * w_t``. What
    one unit of an integer product is worth in the float network (the input activations' step
    times the weights' scale) divides the folded thresholds and multiplies the residual
    scales."""

    def __init__(self, inp: _Input, method: str, seed: int, bits: int, weights: str):
        self.inp, self.method, self.seed = inp, method, seed
        self.a, self.kind, self.levels = bits, weights, (1 << bits) - 1
        self.flipped: dict[str, int] = {}
        self.count = 0

    def matrix(self, key: str, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
        """The quantized matrix and its scale (1 for binary weights)."""
        w = self.inp.matrix(key, shape)
        self.count += 1
        if self.kind == "ternary":
            return ternarize_absmean(w, name=key)
        if self.method == "sign":
            return binarize_sign(w, name=key), 1.0
        if self.method == "stochastic":
            return binarize_stochastic(w, seed=self.seed + self.count, name=key), 1.0
        return binarize_error_feedback(w, name=key), 1.0

    def negate(self, w: np.ndarray, rows=None, cols=None) -> None:
        """Negate rows or columns of a quantized matrix in place (flip bits; negate ternary)."""
        index = (rows, slice(None)) if rows is not None else (slice(None), cols)
        if self.kind == "ternary":
            w[index] = -w[index]
        else:
            w[index] ^= 1

    def step(self, site: str) -> float:
        key = f"{site}.step"
        if not self.inp.has(key):
            return 1.0
        a = self.inp.get(key)
        self.inp.real_numbers(key, a)
        value = float(a) if a.ndim == 0 else None
        if value is None or not np.isfinite(value) or value <= 0:
            raise QuantizeError(f"{self.inp.path}: {key} must be one finite positive number, "
                                f"not {a.tolist()!r}")
        return value

    def threshold(self, site: str, n: int, *, lo: int, hi: int, negate: bool, eps: float,
                  scale: float = 1.0, levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The site's thresholds ((n,) for one level, else (n, L)) and which channels were
        flipped (a negative gamma)."""
        inp, lv = self.inp, self.levels if levels is None else levels
        bounds = level_boundaries(lv.bit_length(), self.step(site))
        stats = [f"{site}.{k}" for k in BN_KEYS]
        present = [s for s in stats if inp.has(s)]
        if present and inp.has(site):
            raise QuantizeError(f"{inp.path}: {site} is given both as thresholds and as "
                                f"batch-norm statistics; give one")
        if present:
            if len(present) != len(stats):
                missing = [s for s in stats if not inp.has(s)]
                raise QuantizeError(f"{inp.path}: batch-norm statistics of {site} are incomplete:"
                                    f" {', '.join(missing)} missing")
            try:
                t, flip = fold_batchnorm(*(inp.get(s) for s in stats), eps=eps, lo=lo, hi=hi,
                                         negate=negate, name=site, boundaries=bounds,
                                         scale=scale)
            except ValueError as e:
                raise QuantizeError(f"{inp.path}: {e}") from e
            if t.shape[0] != n:
                raise QuantizeError(f"{inp.path}: {site} statistics must have shape ({n},), not "
                                    f"({t.shape[0]},)")
            self.flipped[site] = int(flip.sum())
            return (t[:, 0] if lv == 1 else t), flip
        if inp.has(site):
            a = inp.get(site)
            want = (n,) if lv == 1 else (n, lv)
            if a.shape != want:
                raise QuantizeError(f"{inp.path}: {site} must be {want} numbers, not shape "
                                    f"{a.shape} dtype {a.dtype}")
            inp.real_numbers(site, a)
            if not np.isfinite(a).all():
                raise QuantizeError(f"{inp.path}: {site} holds a value that is not finite")
            return np.clip(np.ceil(a), lo, hi).astype(np.int64), np.zeros(n, bool)
        # No statistics: the quantiser's own boundaries, in units of the integer input.
        t = np.clip(np.ceil(bounds / scale), lo, hi).astype(np.int64)
        t = np.broadcast_to(t, (n, lv)).copy()
        return (t[:, 0] if lv == 1 else t), np.zeros(n, bool)

    def layer(self, prefix: str, *, eps: float, heads: int | None) -> tuple[dict, dict]:
        inp = self.inp
        wq = inp.matrix(prefix + "Wq")
        d = wq.shape[0]
        f = inp.matrix(prefix + "W1").shape[0]
        shapes = {"Wq": (d, d), "Wk": (d, d), "Wv": (d, d), "Wo": (d, d), "W1": (f, d),
                  "W2": (d, f)}
        w, g = {}, {}
        for n, s in shapes.items():
            w[n], g[n] = self.matrix(prefix + n, s)
        if heads is not None:
            h = heads
        else:
            h = inp.scalar_int(prefix + "heads" if inp.has(prefix + "heads") else "heads")
        if h <= 0 or d % h:
            raise QuantizeError(f"{inp.path}: heads must divide d_model = {d}, not {h}")
        lv, dh = self.levels, d // h
        step = {site: self.step(prefix + site) for site in
                ("th_attn", "tq", "tk", "tv", "tc", "th_ffn", "t1")}
        res = dict(lo=INT16_MIN, hi=INT16_MAX + 1, negate=False, eps=eps)
        t = {}
        t["th_attn"], flip = self.threshold(prefix + "th_attn", d, **res)
        for n in ("Wq", "Wk", "Wv"):
            self.negate(w[n], cols=flip)
        for site, wn in (("tq", "Wq"), ("tk", "Wk"), ("tv", "Wv")):
            t[site], flip = self.threshold(prefix + site, d, lo=-lv * d, hi=lv * d + 1,
                                           negate=True, eps=eps,
                                           scale=step["th_attn"] * g[wn])
            self.negate(w[wn], rows=flip)
        t["tc"], flip = self.threshold(prefix + "tc", d, lo=lv * INT16_MIN, hi=lv * INT16_MAX,
                                       negate=False, eps=eps, scale=step["tv"])
        self.negate(w["Wo"], cols=flip)
        t["th_ffn"], flip = self.threshold(prefix + "th_ffn", d, **res)
        self.negate(w["W1"], cols=flip)
        t["t1"], flip = self.threshold(prefix + "t1", f, lo=-lv * d, hi=lv * d + 1, negate=True,
                                       eps=eps, scale=step["th_ffn"] * g["W1"])
        self.negate(w["W1"], rows=flip)
        t["ta"], flip = self.threshold(prefix + "ta", h, lo=-lv * lv * dh, hi=lv * lv * dh + 1,
                                       negate=True, eps=eps, scale=step["tq"] * step["tk"],
                                       levels=1)
        if flip.any():
            raise QuantizeError(f"{inp.path}: {prefix}ta has a negative gamma, which cannot be "
                                f"folded (a score has no weight row to negate)")
        scales = {}
        for n, unit in (("so", step["tc"] * g["Wo"]), ("s2", step["t1"] * g["W2"])):
            if inp.has(prefix + n):
                a = inp.get(prefix + n)
                if a.shape != (d,):
                    raise QuantizeError(f"{inp.path}: {prefix}{n} must have shape ({d},), not "
                                        f"{a.shape}")
                inp.real_numbers(prefix + n, a)
                scales[prefix + n] = a * unit
            else:
                scales[prefix + n] = np.full(d, unit)
        return {"d_model": d, "heads": h, "d_ff": f, **w, **t, "bits": self.a,
                "weights": self.kind}, scales


def _check_output(src: Path, dst: Path) -> None:
    """Refuse an output that would overwrite the input or cannot be written."""
    if dst.resolve() == src.resolve() or (dst.exists() and src.exists() and
                                          dst.samefile(src)):
        raise QuantizeError(f"{dst}: the output would overwrite the input; give another path")
    if dst.is_dir():
        raise QuantizeError(f"{dst}: is a folder; give a file path for the output")
    if not dst.parent.is_dir():
        raise QuantizeError(f"{dst}: its folder {dst.parent} does not exist")


def quantize(src: str | Path, dst: str | Path, *, method: str = "sign", seed: int = 0,
             heads: int | None = None, bits: int = 1, weights: str = "binary") -> dict:
    """Quantize ``src`` into exactly the path ``dst`` (replaced whole, never left half
    written) with ``bits``-bit activations and ``weights`` of that kind (binary by
    ``method``; ternary by the absmean rule); return a summary dict (the ``--json`` output)
    that describes that file."""
    methods = ("sign", "stochastic", "error-feedback")
    if method not in methods:
        raise QuantizeError(f"method must be one of {', '.join(methods)}, not {method!r}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 4:
        raise QuantizeError(f"bits must be 1, 2, 3 or 4 (activation bits), not {bits!r}")
    if weights not in ("binary", "ternary"):
        raise QuantizeError(f"weights must be 'binary' or 'ternary', not {weights!r}")
    if weights == "ternary" and method != "sign":
        raise QuantizeError(f"method {method!r} binarises weights; ternary weights use the "
                            f"absmean rule (leave --method at sign)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise QuantizeError(f"seed must be a non-negative integer, not {seed!r}")
    if heads is not None and (isinstance(heads, bool) or not isinstance(heads, int) or
                              heads <= 0):
        raise QuantizeError(f"heads must be a positive integer, not {heads!r}")
    src, dst = Path(src), Path(dst)
    _check_output(src, dst)
    inp = _Input(src, read_npz(src, QuantizeError))
    q = _Quantizer(inp, method, seed, bits, weights)
    eps = inp.eps()
    if inp.has("E"):
        n_layers = 0
        while any(k.startswith(f"layer{n_layers}.") for k in inp.data):
            n_layers += 1
        if n_layers == 0:
            raise QuantizeError(f"{inp.path}: a model file (it has E) needs layer0.* entries")
        specs, scales = [], {}
        for i in range(n_layers):
            spec, sc = q.layer(f"layer{i}.", eps=eps, heads=heads)
            specs.append(spec)
            scales.update(sc)
        ints, r = _scales(inp, scales)
        e = np.round(inp.matrix("E"))
        if e.min() < INT16_MIN or e.max() > INT16_MAX:
            raise QuantizeError(f"{inp.path}: E holds {e.min():g}..{e.max():g}, which does not fit"
                                f" int16 [{INT16_MIN}, {INT16_MAX}]")
        v, d = e.shape
        wout, _ = q.matrix("Wout", (v, d))      # (a positive scale leaves the argmax alone)
        th_out, flip = q.threshold("th_out", d, lo=INT16_MIN, hi=INT16_MAX + 1, negate=False,
                                   eps=eps)
        q.negate(wout, cols=flip)
        layers = tuple(_layer(inp, spec, ints, f"layer{i}.", r) for i, spec in enumerate(specs))
        try:
            params = ModelParams(E=e.astype(np.int16), layers=layers, th_out=th_out, Wout=wout,
                                 head_bits=bits, head_weights=weights)
        except (ValueError, TypeError) as e:
            raise QuantizeError(f"{inp.path}: {e}") from e
        kind = "onebit-model"
    else:
        spec, scales = q.layer("", eps=eps, heads=heads)
        ints, r = _scales(inp, scales)
        layers = (_layer(inp, spec, ints, "", r),)
        params = layers[0]
        kind = "onebit-layer"
    # heads entries are read only when --heads is not given; they are never unknown.
    unused = sorted(k for k in set(inp.data) - inp.used if not k.endswith("heads"))
    if unused:
        raise QuantizeError(f"{inp.path}: unknown entries {', '.join(unused)}")
    try:
        params.save(dst)
    except OSError as e:
        raise QuantizeError(f"{dst}: cannot be written ({e.strerror or e})") from e
    first = layers[0]
    return {
        "output": str(dst), "format": kind, "method": method, "seed": seed,
        "bits": bits, "weights": weights,
        "layers": len(layers), "d_model": first.d_model, "heads": first.heads,
        "d_ff": first.d_ff, "vocab": params.vocab if kind == "onebit-model" else None,
        "r": first.r, "flipped": q.flipped,
        "sha256": hashlib.sha256(dst.read_bytes()).hexdigest(),
    }


def _scales(inp: _Input, scales: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    try:
        return quantize_scales(scales)
    except ValueError as e:
        raise QuantizeError(f"{inp.path}: {e}") from e


def _layer(inp: _Input, spec: dict, ints: dict[str, np.ndarray], prefix: str,
           r: int) -> LayerParams:
    try:
        return LayerParams(**spec, so=ints[prefix + "so"], s2=ints[prefix + "s2"], r=r)
    except (ValueError, TypeError) as e:
        raise QuantizeError(f"{inp.path}: {e}") from e
