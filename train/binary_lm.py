"""The spec's 1-bit language model for quantisation-aware training (``docs/numerics.md``).

The forward pass computes the integer model: binary weights (:class:`.ste.WeightBinarizer`),
binary activations from batch-norm thresholds, binary scores thresholded per head with the causal
mask, mask-times-value context, int8 scales with the shared shift ``r``, int16 saturation, and
the binary LM head. Every tensor that the integer model holds as an integer holds that integer
here (float32 is exact for these magnitudes). Gradients come from the straight-through
estimators. In evaluation mode a batch-norm threshold is ``gamma * (x - mean) / sd + beta >= 0``
with running statistics, which :mod:`.export` folds into the spec's integer ``x >= t``.

Version 2: each layer has its activation bits (A-bit quantisers with a learned step after each
batch norm, :func:`.ste.level_ste`) and weight kind (binary, or ternary by the absmean rule,
:class:`.ste.WeightTernarizer`); the head has its own; an optional learned position table is
added to the embedding (``positions`` rows). Without it order reaches the model only through
the causal mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..host.checks import check_count
from .ste import (
    WeightBinarizer,
    WeightTernarizer,
    floor_ste,
    level_ste,
    round_ste,
    sign_ste,
    step_ste,
)

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
    bits: tuple[int, ...] | int = 1
    weights: tuple[str, ...] | str = "binary"
    head_bits: int | None = None
    head_weights: str | None = None
    positions: int = 0

    def __post_init__(self) -> None:
        n = self.n_layers
        bits = (self.bits,) * n if isinstance(self.bits, int) else tuple(self.bits)
        kinds = (self.weights,) * n if isinstance(self.weights, str) else tuple(self.weights)
        if len(bits) != n or len(kinds) != n:
            raise ValueError(f"BinaryConfig: {n} layers need {n} bits and weight kinds, not "
                             f"{bits} and {kinds}")
        for b in bits + ((self.head_bits,) if self.head_bits is not None else ()):
            if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 4:
                raise ValueError(f"BinaryConfig: activation bits must be 1..4, not {b!r}")
        for k in kinds + ((self.head_weights,) if self.head_weights is not None else ()):
            if k not in ("binary", "ternary"):
                raise ValueError(f"BinaryConfig: weights must be 'binary' or 'ternary', not "
                                 f"{k!r}")
        if isinstance(self.positions, bool) or not isinstance(self.positions, int) or \
                self.positions < 0:
            raise ValueError(f"BinaryConfig.positions must be a non-negative integer, not "
                             f"{self.positions!r}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "weights", kinds)
        if self.head_bits is None:
            object.__setattr__(self, "head_bits", bits[-1] if bits else 1)
        if self.head_weights is None:
            object.__setattr__(self, "head_weights", kinds[-1] if kinds else "binary")
        for name in ("vocab", "d_model", "heads", "d_ff", "n_layers"):
            v = getattr(self, name)
            check_count(f"BinaryConfig.{name}", v)
        if self.d_model % self.heads:
            raise ValueError(f"BinaryConfig.heads must divide d_model = {self.d_model}, not "
                             f"{self.heads}")
        if not 0 <= self.r <= 15:
            raise ValueError(f"BinaryConfig.r must be a shift in 0..15, not {self.r!r}")


class Threshold(nn.Module):
    """Batch norm over the last axis, then an A-bit quantiser: for A = 1 the bit ``>= 0`` as
    +-1; for more, the level of a uniform quantiser with a learned step, as the odd integer
    ``2q - L`` (:func:`.ste.level_ste`)."""

    def __init__(self, n: int, *, clip: bool, bits: int = 1):
        super().__init__()
        self.bn = nn.BatchNorm1d(n, momentum=0.05)
        self.clip, self.bits, self.levels = clip, bits, (1 << bits) - 1
        if bits > 1:                  # boundaries at step * (2j - 1 - L), about +-2 sd wide
            self.log_step = nn.Parameter(torch.tensor(math.log(2.0 / self.levels)))

    def step(self) -> float:
        """The quantiser's step (1 for A = 1, whose only boundary is 0)."""
        return float(torch.exp(self.log_step)) if self.bits > 1 else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        if self.bits == 1:
            return sign_ste(z, clip=self.clip)
        return level_ste(z, torch.exp(self.log_step), self.levels)


def _weights(cfg: BinaryConfig, kind: str, n: int, k: int, generator: torch.Generator):
    if kind == "ternary":
        return WeightTernarizer(n, k, clip=cfg.clip, generator=generator)
    return WeightBinarizer(n, k, mode="stochastic" if cfg.stochastic else "sign", clip=cfg.clip,
                           error_feedback=cfg.error_feedback, generator=generator)


class BinaryLayer(nn.Module):
    def __init__(self, cfg: BinaryConfig, generator: torch.Generator, index: int = 0):
        super().__init__()
        d, f = cfg.d_model, cfg.d_ff
        self.cfg = cfg
        self.bits, self.kind = cfg.bits[index], cfg.weights[index]
        self.levels = (1 << self.bits) - 1

        def weights(n: int, k: int):
            return _weights(cfg, self.kind, n, k, generator)

        self.Wq, self.Wk, self.Wv, self.Wo = (weights(d, d) for _ in range(4))
        self.W1, self.W2 = weights(f, d), weights(d, f)
        self.th_attn, self.tq, self.tk, self.tv, self.tc, self.th_ffn = (
            Threshold(d, clip=cfg.clip, bits=self.bits) for _ in range(6))
        self.t1 = Threshold(f, clip=cfg.clip, bits=self.bits)
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
        s = qh @ kh.transpose(-1, -2)                   # (B, H, T, T) in [-L^2 Dh, L^2 Dh]
        root = math.sqrt(dh) * self.levels ** 2
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        a = step_ste((s - (self.ta * root)[None, :, None, None]) / root) * causal
        c = (a @ vh).transpose(1, 2).reshape(b, t, d)                   # mdot(A, Vb)
        cb = self.tc(c)
        so, s2 = self.scales()
        x1 = torch.clamp(x + floor_ste((cb @ self.Wo().T) * so / 2 ** cfg.r), *INT16)
        hb = self.t1(self.th_ffn(x1) @ self.W1().T)
        return torch.clamp(x1 + floor_ste((hb @ self.W2().T) * s2 / 2 ** cfg.r), *INT16)

    def binarizers(self) -> list:
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
        self.layers = nn.ModuleList(BinaryLayer(cfg, gen, i) for i in range(cfg.n_layers))
        self.th_out = Threshold(cfg.d_model, clip=cfg.clip, bits=cfg.head_bits)
        if cfg.head_weights == "ternary":
            self.Wout = WeightTernarizer(cfg.vocab, cfg.d_model, clip=cfg.clip, generator=gen)
        else:
            self.Wout = WeightBinarizer(cfg.vocab, cfg.d_model, mode="sign", clip=cfg.clip,
                                        error_feedback=cfg.error_feedback, generator=gen)
        head_levels = (1 << cfg.head_bits) - 1
        self.logit_scale = nn.Parameter(torch.tensor(4.0 / math.sqrt(cfg.d_model) /
                                                     head_levels))
        if cfg.positions:               # a learned position table, added on the host
            self.pos = nn.Parameter(torch.zeros(cfg.positions, cfg.d_model))

    def embedding(self) -> torch.Tensor:
        return torch.clamp(round_ste(self.embed * E_SCALE), *INT16)

    def position_table(self) -> torch.Tensor | None:
        """The int16 position table ``P`` (None without one)."""
        if not self.cfg.positions:
            return None
        return torch.clamp(round_ste(self.pos * E_SCALE), *INT16)

    def integer_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding()[tokens]
        if self.cfg.positions:
            t = tokens.shape[-1]
            if t > self.cfg.positions:
                raise ValueError(f"{t} tokens exceed the position table's "
                                 f"{self.cfg.positions} positions")
            x = torch.clamp(x + self.position_table()[:t], *INT16)
        for layer in self.layers:
            x = layer(x)
        return self.th_out(x) @ self.Wout().T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.integer_logits(tokens) * self.logit_scale

    def binarizers(self) -> list:
        return [w for layer in self.layers for w in layer.binarizers()] + [self.Wout]

    def after_step(self) -> None:
        """Clip latent weights and carry error feedback; call after every optimiser step."""
        for w in self.binarizers():
            w.after_step()
