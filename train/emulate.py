"""The exported model's integer forward pass in PyTorch: the trained network's own integer
emulation, written from the spec independently of the NumPy golden model (``int64`` tensors,
+-1 matrices, no packing), so that the two can check each other."""

from __future__ import annotations

import numpy as np
import torch

from ..host.params import LayerParams, ModelParams

__all__ = ["layer_forward", "model_logits", "generate"]


def _pm(bits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(bits.astype(np.int64) * 2 - 1)


def _vec(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64))


def _sat16(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-32768, 32767)


def layer_forward(x: torch.Tensor, p: LayerParams) -> torch.Tensor:
    """One layer on int64 (T, D) rows, the whole sequence with the causal mask."""
    t, d = x.shape
    h, dh = p.heads, p.head_dim
    xb = torch.where(x >= _vec(p.th_attn), 1, -1)
    qb, kb, vb = (torch.where(xb @ _pm(w).T >= _vec(th), 1, -1)
                  for w, th in ((p.Wq, p.tq), (p.Wk, p.tk), (p.Wv, p.tv)))
    qh, kh, vh = (y.reshape(t, h, dh).transpose(0, 1) for y in (qb, kb, vb))
    s = qh @ kh.transpose(1, 2)                                         # (H, T, T)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    a = ((s >= _vec(p.ta)[:, None, None]) & causal).to(torch.int64)
    c = (a @ vh).transpose(0, 1).reshape(t, d)                          # mdot(A, Vb)
    cb = torch.where(c >= _vec(p.tc), 1, -1)
    x1 = _sat16(x + torch.div(cb @ _pm(p.Wo).T * _vec(p.so), 2 ** p.r, rounding_mode="floor"))
    hb = torch.where(torch.where(x1 >= _vec(p.th_ffn), 1, -1) @ _pm(p.W1).T >= _vec(p.t1), 1, -1)
    return _sat16(x1 + torch.div(hb @ _pm(p.W2).T * _vec(p.s2), 2 ** p.r, rounding_mode="floor"))


def model_logits(tokens, m: ModelParams) -> torch.Tensor:
    """Integer logits (T, V) for every position of ``tokens``."""
    x = torch.from_numpy(m.E.astype(np.int64))[torch.as_tensor(np.asarray(tokens))]
    for p in m.layers:
        x = layer_forward(x, p)
    return torch.where(x >= _vec(m.th_out), 1, -1) @ _pm(m.Wout).T


def generate(prompt, n: int, m: ModelParams) -> np.ndarray:
    """Greedy tokens after ``prompt`` (recomputing the whole sequence; lowest index wins ties)."""
    seq = [int(t) for t in prompt]
    out = []
    for _ in range(n):
        nxt = int(torch.argmax(model_logits(seq, m)[-1]))   # argmax returns the first maximum
        out.append(nxt)
        seq.append(nxt)
    return np.asarray(out, dtype=np.int64)
