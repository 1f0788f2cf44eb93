"""Export a trained :class:`.binary_lm.BinaryLM` as the project's model file (``ModelParams``).

Folding, per the evaluation forward of the trained network:

- Weights: ``sign(w)`` of each latent matrix, as bits.
- Batch-norm thresholds (running statistics) through :func:`onebit.host.folding.fold_batchnorm`.
  On the Q/K/V and first feed-forward projections a negative ``gamma`` negates the producing
  weight row. On the residual stream (``th_attn``, ``th_ffn``, ``th_out``) and on the context
  sum (``tc``) nothing can be negated, so the folded threshold gives the inverted bit and the
  columns of every weight that reads it are flipped (``Wq/Wk/Wv``, ``W1``, ``Wout``, ``Wo``).
- Score thresholds: ``ta = ceil(ta_latent * sqrt(Dh))`` (the scores are integers).
- Scales and the shift are already the int8 integers and ``r`` of the forward pass; the
  embedding is already int16.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..host.folding import fold_batchnorm
from ..host.params import INT16_MAX, INT16_MIN, WEIGHT_NAMES, LayerParams, ModelParams
from .binary_lm import BinaryLM, Threshold

__all__ = ["export_model"]


def _fold(th: Threshold, *, lo: int, hi: int, negate: bool, name: str):
    bn = th.bn
    return fold_batchnorm(bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy(),
                          bn.running_mean.double().numpy(), bn.running_var.double().numpy(),
                          eps=bn.eps, lo=lo, hi=hi, negate=negate, name=name)


def _flip_rows(w: np.ndarray, flip: np.ndarray) -> None:
    w[flip, :] ^= 1


def _flip_cols(w: np.ndarray, flip: np.ndarray) -> None:
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
        w = {n: getattr(layer, n).bits().numpy().copy() for n in WEIGHT_NAMES}
        th_attn, flip = _fold(layer.th_attn, **res, name=f"layer{i}.th_attn")
        for n in ("Wq", "Wk", "Wv"):
            _flip_cols(w[n], flip)
        t = {}
        for n, wn in (("tq", "Wq"), ("tk", "Wk"), ("tv", "Wv")):
            t[n], flip = _fold(getattr(layer, n), lo=-d, hi=d + 1, negate=True,
                               name=f"layer{i}.{n}")
            _flip_rows(w[wn], flip)
        tc, flip = _fold(layer.tc, lo=INT16_MIN, hi=INT16_MAX, negate=False, name=f"layer{i}.tc")
        _flip_cols(w["Wo"], flip)
        th_ffn, flip = _fold(layer.th_ffn, **res, name=f"layer{i}.th_ffn")
        _flip_cols(w["W1"], flip)
        t1, flip = _fold(layer.t1, lo=-d, hi=d + 1, negate=True, name=f"layer{i}.t1")
        _flip_rows(w["W1"], flip)
        ta = np.clip(np.ceil(layer.ta.double().numpy() * math.sqrt(dh)), -dh, dh + 1)
        so, s2 = (s.numpy().astype(np.int64) for s in layer.scales())
        layers.append(LayerParams(
            d_model=d, heads=cfg.heads, d_ff=f, **w, th_attn=th_attn, **t, ta=ta.astype(np.int64),
            tc=tc, th_ffn=th_ffn, t1=t1, so=so, s2=s2, r=cfg.r))
    wout = model.Wout.bits().numpy().copy()
    th_out, flip = _fold(model.th_out, **res, name="th_out")
    _flip_cols(wout, flip)
    return ModelParams(E=model.embedding().numpy().astype(np.int16), layers=tuple(layers),
                       th_out=th_out, Wout=wout, charset=charset,
                       logit_scale=float(model.logit_scale))
