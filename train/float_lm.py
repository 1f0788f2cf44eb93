"""The float twin of :class:`.binary_lm.BinaryLM`: same D, H, F, L and vocabulary, float weights,
LayerNorm, softmax attention with the causal mask, ReLU feed-forward, and a learned position
table exactly when the binary model has one. The teacher for distillation and the yardstick
of the loss target."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FloatLM"]


class FloatLayer(nn.Module):
    def __init__(self, d: int, h: int, f: int):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.ff = nn.Sequential(nn.Linear(d, f), nn.ReLU(), nn.Linear(f, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (y.reshape(b, t, self.h, d // self.h).transpose(1, 2) for y in (q, k, v))
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.ln2(x))


class FloatLM(nn.Module):
    """Float language model of the binary model's shape; ``forward`` gives logits (B, T, V)."""

    def __init__(self, *, vocab: int, d_model: int, heads: int, d_ff: int, n_layers: int,
                 seed: int = 0, positions: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(positions, d_model)) if positions else None
        self.layers = nn.ModuleList(FloatLayer(d_model, heads, d_ff) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos[:tokens.shape[-1]]
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x))

    def after_step(self) -> None:
        """Nothing to do (the binary model's hook)."""
