"""Export a trained :class:`.binary_lm.BinaryLM` as the project's model file (``ModelParams``).

Folding, per the evaluation forward of the trained network:

- Weights: ``sign(w)`` of each latent binary matrix as bits, or a ternary matrix's
  ``round(clip(w / mean|w|, -1, 1))``.
- Batch norms and the quantisers after them (running statistics; for A bits the quantiser's
  boundaries ``step * (2j - 1 - L)``) through :func:`onebit.host.folding.fold_batchnorm`: one
  threshold per channel for A = 1, a multi-threshold of L levels for more. On the Q/K/V and
  first feed-forward projections a negative ``gamma`` negates the producing weight row. On the
  residual stream (``th_attn``, ``th_ffn``, ``th_out``) and on the context sum (``tc``) nothing
  can be negated, so the folded thresholds give the inverted level and the columns of every
  weight that reads it are negated (``Wq/Wk/Wv``, ``W1``, ``Wout``, ``Wo``).
- Score thresholds: ``ta = ceil(ta_latent * sqrt(Dh) * L^2)`` (the scores are integers).
- Scales and the shift are already the int8 integers and ``r`` of the forward pass; the
  embedding and the position table are already int16.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..host.folding import fold_batchnorm, level_boundaries
from ..host.params import INT16_MAX, INT16_MIN, WEIGHT_NAMES, LayerParams, ModelParams
from .binary_lm import BinaryLM, Threshold

__all__ = ["export_model"]


def _fold(th: Threshold, *, lo: int, hi: int, negate: bool, name: str):
    bn = th.bn
    t, flip = fold_batchnorm(
        bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy(),
        bn.running_mean.double().numpy(), bn.running_var.double().numpy(), eps=bn.eps, lo=lo,
        hi=hi, negate=negate, name=name, boundaries=level_boundaries(th.bits, th.step()))
    return (t[:, 0] if th.bits == 1 else t), flip


def _negate_rows(w: np.ndarray, flip: np.ndarray) -> None:
    if w.dtype == np.int8:
        w[flip, :] *= -1
    else:
        w[flip, :] ^= 1


def _negate_cols(w: np.ndarray, flip: np.ndarray) -> None:
    if w.dtype == np.int8:
        w[:, flip] *= -1
    else:
        w[:, flip] ^= 1


@torch.no_grad()
def export_model(model: BinaryLM, *, charset: str = "") -> ModelParams:
    """Return the trained network as validated :class:`ModelParams` (see the module text)."""
    model.eval()
    cfg = model.cfg
    d, f, dh = cfg.d_model, cfg.d_ff, cfg.d_model // cfg.heads
    res = dict(lo=INT16_MIN, hi=INT16_MAX + 1, negate=False)
    layers = []
    for i, layer in enumerate(model.layers):
        lv = layer.levels
        w = {n: getattr(layer, n).values().numpy().copy() for n in WEIGHT_NAMES}
        th_attn, flip = _fold(layer.th_attn, **res, name=f"layer{i}.th_attn")
        for n in ("Wq", "Wk", "Wv"):
            _negate_cols(w[n], flip)
        t = {}
        for n, wn in (("tq", "Wq"), ("tk", "Wk"), ("tv", "Wv")):
            t[n], flip = _fold(getattr(layer, n), lo=-lv * d, hi=lv * d + 1, negate=True,
                               name=f"layer{i}.{n}")
            _negate_rows(w[wn], flip)
        tc, flip = _fold(layer.tc, lo=lv * INT16_MIN, hi=lv * INT16_MAX, negate=False,
                         name=f"layer{i}.tc")
        _negate_cols(w["Wo"], flip)
        th_ffn, flip = _fold(layer.th_ffn, **res, name=f"layer{i}.th_ffn")
        _negate_cols(w["W1"], flip)
        t1, flip = _fold(layer.t1, lo=-lv * d, hi=lv * d + 1, negate=True, name=f"layer{i}.t1")
        _negate_rows(w["W1"], flip)
        top = lv * lv * dh
        ta = np.clip(np.ceil(layer.ta.double().numpy() * math.sqrt(dh) * lv * lv), -top, top + 1)
        so, s2 = (s.numpy().astype(np.int64) for s in layer.scales())
        layers.append(LayerParams(
            d_model=d, heads=cfg.heads, d_ff=f, **w, th_attn=th_attn, **t, ta=ta.astype(np.int64),
            tc=tc, th_ffn=th_ffn, t1=t1, so=so, s2=s2, r=cfg.r, bits=layer.bits,
            weights=layer.kind))
    wout = model.Wout.values().numpy().copy()
    th_out, flip = _fold(model.th_out, **res, name="th_out")
    _negate_cols(wout, flip)
    pos = model.position_table()
    return ModelParams(E=model.embedding().numpy().astype(np.int16), layers=tuple(layers),
                       th_out=th_out, Wout=wout, charset=charset,
                       logit_scale=float(model.logit_scale), head_bits=cfg.head_bits,
                       head_weights=cfg.head_weights,
                       P=None if pos is None else pos.numpy().astype(np.int16))
