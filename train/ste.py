"""Straight-through estimators and weight binarisers for quantisation-aware training.

Forward passes give exactly the values the integer model computes; backward passes give the
estimators' surrogate gradients:

- :func:`sign_ste` ``x >= 0 -> +1 else -1``. Gradient: identity (``clip=False``, plain STE) or
  identity inside ``|x| <= 1`` and zero outside (``clip=True``, the hardtanh STE of BinaryNet).
- :func:`step_ste` ``x >= 0 -> 1 else 0``; gradient ``0.5`` inside ``|x| <= 1`` (hard sigmoid).
- :func:`round_ste`, :func:`floor_ste`: integer rounding with an identity gradient.
- :class:`WeightBinarizer`: latent float weights to +-1 by sign, by stochastic sign (+1 with
  probability ``(clip(w) + 1) / 2``, unbiased), or with error feedback (``sign(w + e)``, the
  quantisation error ``e`` of one step carried into the next).
"""

from __future__ import annotations

import torch

__all__ = ["sign_ste", "step_ste", "round_ste", "floor_ste", "stochastic_sign", "WeightBinarizer",
           "WeightTernarizer", "level_ste"]


class _Sign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, clip):
        ctx.save_for_backward(x)
        ctx.clip = clip
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.clip:
            grad = grad * (x.abs() <= 1).to(grad.dtype)
        return grad, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 0.5 * (x.abs() <= 1).to(grad.dtype)


class _Stochastic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, generator):
        ctx.save_for_backward(w)
        p = (w.clamp(-1, 1) + 1) / 2
        u = torch.rand(w.shape, generator=generator, dtype=w.dtype, device=w.device)
        return torch.where(u < p, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype), None


def sign_ste(x: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """+-1 by ``x >= 0``; straight-through gradient, clipped to ``|x| <= 1`` if ``clip``."""
    return _Sign.apply(x, clip)


def step_ste(x: torch.Tensor) -> torch.Tensor:
    """0/1 by ``x >= 0``; gradient of the hard sigmoid ``clip((x + 1) / 2, 0, 1)``."""
    return _Step.apply(x)


def stochastic_sign(w: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """+1 with probability ``(clip(w, -1, 1) + 1) / 2``, else -1; ``E[out] = clip(w, -1, 1)``."""
    return _Stochastic.apply(w, generator)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (as ``torch.round``), identity gradient."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """Floor (the spec's arithmetic shift of an exact product), identity gradient."""
    return x + (torch.floor(x) - x).detach()


class WeightBinarizer(torch.nn.Module):
    """Latent float weights ``(out, in)`` and their +-1 binarisation for the forward pass.

    ``mode``: ``"sign"`` or ``"stochastic"`` (training only; evaluation uses the sign).
    ``clip``: the clipped STE, and latent weights kept in [-1, 1] by :meth:`after_step`.
    ``error_feedback``: binarise ``w + e`` instead of ``w``; :meth:`after_step` sets
    ``e <- (w + e) - s * sign(w + e)`` with ``s`` the row's ``mean |w + e|``, so the part of the
    weight that one step's binarisation lost is carried into the next. The exported bits are
    the evaluation forward's bits: ``sign(w + e)`` with error feedback, ``sign(w)`` otherwise.
    """

    MODES = ("sign", "stochastic")

    def __init__(self, out_features: int, in_features: int, *, mode: str = "sign",
                 clip: bool = True, error_feedback: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}, not {mode!r}")
        self.mode, self.clip, self.error_feedback = mode, clip, error_feedback
        self.generator = generator
        bound = 1.0 / 3
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features).uniform_(
            -bound, bound, generator=generator))
        self.register_buffer("error", torch.zeros(out_features, in_features))

    def forward(self) -> torch.Tensor:
        if not self.training:
            return sign_ste(self.weight, clip=self.clip)
        w = self.weight + self.error if self.error_feedback else self.weight
        if self.mode == "stochastic":
            return stochastic_sign(w, self.generator)
        return sign_ste(w, clip=self.clip)

    @torch.no_grad()
    def after_step(self) -> None:
        """Call after each optimiser step: clip latent weights, carry the error forward."""
        if self.clip:
            self.weight.clamp_(-1, 1)
        if self.error_feedback:
            v = self.weight + self.error
            s = v.abs().mean(dim=1, keepdim=True)
            self.error.copy_(v - s * torch.where(v >= 0, 1.0, -1.0))

    @torch.no_grad()
    def bits(self) -> torch.Tensor:
        """The binary weights of the evaluation forward as 0/1 (bit 1 = +1)."""
        return (self.weight >= 0).to(torch.uint8)

    values = bits


def level_ste(z: torch.Tensor, step: torch.Tensor, levels: int) -> torch.Tensor:
    """An A-bit uniform quantiser of step ``step`` (``levels = 2^A - 1``): the level ``q`` =
    number of ``j`` in 1..L with ``z >= step * (2j - 1 - L)``, returned as the odd integer
    ``2q - L``. Gradient: ``1 / step`` to ``z`` inside the levels' range, zero outside; the
    step learns through ``z / step`` (as LSQ's does)."""
    u = (z / step + levels + 1) / 2
    q = torch.clamp(floor_ste(u), 0, levels)
    return 2 * q - levels


class WeightTernarizer(torch.nn.Module):
    """Latent float weights ``(out, in)`` and their ternary quantisation by BitNet b1.58's
    absmean rule, ``w_t = round(clip(w / mean|w|, -1, 1))`` over the matrix, with a
    straight-through gradient (through ``w / mean|w|``). ``clip`` keeps latent weights in
    [-1, 1]."""

    def __init__(self, out_features: int, in_features: int, *, clip: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.clip = clip
        bound = 1.0 / 3
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features).uniform_(
            -bound, bound, generator=generator))

    def forward(self) -> torch.Tensor:
        scaled = self.weight / self.weight.abs().mean().clamp_min(1e-8)
        return scaled + (torch.clamp(torch.round(scaled), -1, 1) - scaled).detach()

    @torch.no_grad()
    def after_step(self) -> None:
        if self.clip:
            self.weight.clamp_(-1, 1)

    @torch.no_grad()
    def values(self) -> torch.Tensor:
        """The ternary weights of the forward pass as int8 in {-1, 0, 1}."""
        return self.forward().round().to(torch.int8)
