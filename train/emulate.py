"""The exported model's integer forward pass in PyTorch: the trained network's own integer
emulation, written from the numerics independently of the NumPy golden model (``int64``
tensors, activation values ``2q - L`` and weight values as integer matrices, no packing), so
that the two can check each other."""

from __future__ import annotations

import numpy as np
import torch

from ..host.params import LayerParams, ModelParams

__all__ = ["layer_forward", "model_logits", "generate"]


def _values(w: np.ndarray) -> torch.Tensor:
    """Weight values: +-1 from binary bits, or the ternary integers themselves."""
    w = np.asarray(w, dtype=np.int64) if w.dtype == np.int8 else w.astype(np.int64) * 2 - 1
    return torch.from_numpy(np.asarray(w, dtype=np.int64))


def _levels(x: torch.Tensor, t: np.ndarray, levels: int) -> torch.Tensor:
    """``hat(MT(x, t)) = 2 MT(x, t) - L`` for thresholds (n,) or (n, L)."""
    tt = torch.from_numpy(np.asarray(t, dtype=np.int64))
    if tt.ndim == 1:
        tt = tt[:, None]
    q = (x[..., None] >= tt).sum(dim=-1)
    return 2 * q - levels


def _vec(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64))


def _sat16(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-32768, 32767)


def layer_forward(x: torch.Tensor, p: LayerParams) -> torch.Tensor:
    """One layer on int64 (T, D) rows, the whole sequence with the causal mask."""
    t, d = x.shape
    h, dh, lv = p.heads, p.head_dim, p.levels
    xa = _levels(x, p.th_attn, lv)
    qa, ka, va = (_levels(xa @ _values(w).T, th, lv)
                  for w, th in ((p.Wq, p.tq), (p.Wk, p.tk), (p.Wv, p.tv)))
    qh, kh, vh = (y.reshape(t, h, dh).transpose(0, 1) for y in (qa, ka, va))
    s = qh @ kh.transpose(1, 2)                                         # (H, T, T)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    a = ((s >= _vec(p.ta)[:, None, None]) & causal).to(torch.int64)
    c = (a @ vh).transpose(0, 1).reshape(t, d)                          # msum(M, hat(V))
    ca = _levels(c, p.tc, lv)
    x1 = _sat16(x + torch.div(ca @ _values(p.Wo).T * _vec(p.so), 2 ** p.r,
                              rounding_mode="floor"))
    ha = _levels(_levels(x1, p.th_ffn, lv) @ _values(p.W1).T, p.t1, lv)
    return _sat16(x1 + torch.div(ha @ _values(p.W2).T * _vec(p.s2), 2 ** p.r,
                                 rounding_mode="floor"))


def model_logits(tokens, m: ModelParams) -> torch.Tensor:
    """Integer logits (T, V) for every position of ``tokens``."""
    tok = torch.as_tensor(np.asarray(tokens))
    x = torch.from_numpy(m.E.astype(np.int64))[tok]
    if m.P is not None:
        x = _sat16(x + torch.from_numpy(m.P[:len(tok)].astype(np.int64)))
    for p in m.layers:
        x = layer_forward(x, p)
    return _levels(x, m.th_out, (1 << m.head_bits) - 1) @ _values(m.Wout).T


def generate(prompt, n: int, m: ModelParams) -> np.ndarray:
    """Greedy tokens after ``prompt`` (recomputing the whole sequence; lowest index wins ties)."""
    seq = [int(t) for t in prompt]
    out = []
    for _ in range(n):
        nxt = int(torch.argmax(model_logits(seq, m)[-1]))   # argmax returns the first maximum
        out.append(nxt)
        seq.append(nxt)
    return np.asarray(out, dtype=np.int64)
