"""The spec's 1-bit language model for quantisation-aware training (``docs/numerics.md``).

The forward pass computes the integer model: binary weights (:class:`.ste.WeightBinarizer`),
binary activations from batch-norm thresholds, binary scores thresholded per head with the causal
mask, mask-times-value context, int8 scales with the shared shift ``r``, int16 saturation, and
the binary LM head. Every tensor that the integer model holds as an integer holds that integer
here (float32 is exact for these magnitudes). Gradients come from the straight-through
estimators. In evaluation mode a batch-norm threshold is ``gamma * (x - mean) / sd + beta >= 0``
with running statistics, which :mod:`.export` folds into the spec's integer ``x >= t``.

Like the spec, the model has no positional encoding: order reaches it only through the causal
mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..host.checks import check_count
from .ste import WeightBinarizer, floor_ste, round_ste, sign_ste, step_ste

__all__ = ["BinaryConfig", "BinaryLM"]

E_SCALE = 256.0      # embedding integers per unit of the latent embedding
S_SCALE = 64.0       # int8 scale integers per unit of the latent scale
INT16 = (-32768.0, 32767.0)


@dataclass(frozen=True)
class BinaryConfig:
    """Shape and training options of :class:`BinaryLM`.

    ``stochastic``: stochastic weight binarisation in training. ``clip``: clipped STE (and
    latent weights kept in [-1, 1]); off means the plain identity STE. ``error_feedback``:
    the weights' quantisation error carried into the next step. ``r``: the spec's shift.
    """

    vocab: int
    d_model: int = 128
    heads: int = 4
    d_ff: int = 512
    n_layers: int = 2
    r: int = 4
    stochastic: bool = False
    clip: bool = True
    error_feedback: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab", "d_model", "heads", "d_ff", "n_layers"):
            v = getattr(self, name)
            check_count(f"BinaryConfig.{name}", v)
        if self.d_model % self.heads:
            raise ValueError(f"BinaryConfig.heads must divide d_model = {self.d_model}, not "
                             f"{self.heads}")
        if not 0 <= self.r <= 15:
            raise ValueError(f"BinaryConfig.r must be a shift in 0..15, not {self.r!r}")


class Threshold(nn.Module):
    """Batch norm over the last axis, then the bit ``>= 0`` as +-1 (or 0/1 with ``as_mask``)."""

    def __init__(self, n: int, *, clip: bool):
        super().__init__()
        self.bn = nn.BatchNorm1d(n, momentum=0.05)
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return sign_ste(z, clip=self.clip)


class BinaryLayer(nn.Module):
    def __init__(self, cfg: BinaryConfig, generator: torch.Generator):
        super().__init__()
        d, f = cfg.d_model, cfg.d_ff
        self.cfg = cfg

        def weights(n: int, k: int) -> WeightBinarizer:
            return WeightBinarizer(n, k, mode="stochastic" if cfg.stochastic else "sign",
                                   clip=cfg.clip, error_feedback=cfg.error_feedback,
                                   generator=generator)

        self.Wq, self.Wk, self.Wv, self.Wo = (weights(d, d) for _ in range(4))
        self.W1, self.W2 = weights(f, d), weights(d, f)
        self.th_attn, self.tq, self.tk, self.tv, self.tc, self.th_ffn = (
            Threshold(d, clip=cfg.clip) for _ in range(6))
        self.t1 = Threshold(f, clip=cfg.clip)
        self.ta = nn.Parameter(torch.zeros(cfg.heads))       # in units of sqrt(Dh)
        self.so = nn.Parameter(torch.ones(d))                 # in units of S_SCALE
        self.s2 = nn.Parameter(torch.ones(d))

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.clamp(round_ste(s * S_SCALE), -128, 127) for s in (self.so, self.s2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, t, d = x.shape
        h, dh = cfg.heads, d // cfg.heads
        xb = self.th_attn(x)
        qb = self.tq(xb @ self.Wq().T)
        kb = self.tk(xb @ self.Wk().T)
        vb = self.tv(xb @ self.Wv().T)
        qh, kh, vh = (y.reshape(b, t, h, dh).transpose(1, 2) for y in (qb, kb, vb))
        s = qh @ kh.transpose(-1, -2)                                   # (B, H, T, T) in [-Dh, Dh]
        root = math.sqrt(dh)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        a = step_ste((s - (self.ta * root)[None, :, None, None]) / root) * causal
        c = (a @ vh).transpose(1, 2).reshape(b, t, d)                   # mdot(A, Vb)
        cb = self.tc(c)
        so, s2 = self.scales()
        x1 = torch.clamp(x + floor_ste((cb @ self.Wo().T) * so / 2 ** cfg.r), *INT16)
        hb = self.t1(self.th_ffn(x1) @ self.W1().T)
        return torch.clamp(x1 + floor_ste((hb @ self.W2().T) * s2 / 2 ** cfg.r), *INT16)

    def binarizers(self) -> list[WeightBinarizer]:
        return [self.Wq, self.Wk, self.Wv, self.Wo, self.W1, self.W2]


class BinaryLM(nn.Module):
    """Embedding (int16), ``n_layers`` binary layers, binary LM head; returns scaled logits.

    ``forward(tokens)`` maps int64 (B, T) to float (B, T, V): the integer logits
    ``(X >= th_out) . Wout^T`` times a learned temperature ``logit_scale`` (which never changes
    the argmax; it calibrates the softmax for the loss). :meth:`integer_logits` gives the integers.
    """

    def __init__(self, cfg: BinaryConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        self.embed = nn.Parameter(torch.randn(cfg.vocab, cfg.d_model, generator=gen) * 0.5)
        self.layers = nn.ModuleList(BinaryLayer(cfg, gen) for _ in range(cfg.n_layers))
        self.th_out = Threshold(cfg.d_model, clip=cfg.clip)
        self.Wout = WeightBinarizer(cfg.vocab, cfg.d_model, mode="sign", clip=cfg.clip,
                                    error_feedback=cfg.error_feedback, generator=gen)
        self.logit_scale = nn.Parameter(torch.tensor(4.0 / math.sqrt(cfg.d_model)))

    def embedding(self) -> torch.Tensor:
        return torch.clamp(round_ste(self.embed * E_SCALE), *INT16)

    def integer_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding()[tokens]
        for layer in self.layers:
            x = layer(x)
        return self.th_out(x) @ self.Wout().T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.integer_logits(tokens) * self.logit_scale

    def binarizers(self) -> list[WeightBinarizer]:
        return [w for layer in self.layers for w in layer.binarizers()] + [self.Wout]

    def after_step(self) -> None:
        """Clip latent weights and carry error feedback; call after every optimiser step."""
        for w in self.binarizers():
            w.after_step()
