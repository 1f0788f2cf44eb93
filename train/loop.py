"""Training runs: technique presets, the optimisation loop, evaluation.

Every run of a comparison shares the budget (``steps``, ``batch``, ``context``) and the seed,
so the techniques differ only in what they switch on:

==================  =====================================================================
``ste``             plain straight-through estimator (identity gradient), no clipping
``ste-clip``        clipped STE (gradient zero where ``|x| > 1``), latent weights in [-1, 1]
``stochastic``      ``ste-clip`` + stochastic weight binarisation in training
``error-feedback``  ``ste-clip`` + the weights' quantisation error carried into the next step
``grad-clip``       ``ste-clip`` + gradient-norm clipping at 1.0
``distill``         ``ste-clip`` + distillation from the trained float twin (alpha 0.5)
``combined``        ``ste-clip`` + gradient clipping + distillation (the shipped model)
``float``           the float twin itself
==================  =====================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..host.checks import check_count
from .binary_lm import BinaryConfig, BinaryLM
from .corpus import Corpus, batches
from .float_lm import FloatLM

__all__ = ["TECHNIQUES", "RunConfig", "RunResult", "train", "evaluate", "make_model"]


@dataclass(frozen=True)
class Technique:
    clip: bool = True
    stochastic: bool = False
    error_feedback: bool = False
    grad_clip: float | None = None
    distill: float = 0.0
    float_model: bool = False


TECHNIQUES: dict[str, Technique] = {
    "ste": Technique(clip=False),
    "ste-clip": Technique(),
    "stochastic": Technique(stochastic=True),
    "error-feedback": Technique(error_feedback=True),
    "grad-clip": Technique(grad_clip=1.0),
    "distill": Technique(distill=0.5),
    "combined": Technique(grad_clip=1.0, distill=0.5),
    "float": Technique(float_model=True),
}


@dataclass(frozen=True)
class RunConfig:
    """One training run: model shape, budget, seed and technique (a key of ``TECHNIQUES``)."""

    technique: str = "combined"
    d_model: int = 128
    heads: int = 4
    d_ff: int = 512
    n_layers: int = 2
    r: int = 4
    steps: int = 2000
    batch: int = 32
    context: int = 64
    lr: float = 3e-2         # latent binary weights live in [-1, 1]: a large step flips bits
    float_lr: float = 5e-3
    seed: int = 0
    eval_batches: int = 40
    bits: int = 1                # activation bits of every layer and the head
    weights: str = "binary"      # weight kind of every layer and the head
    layer_bits: tuple[int, ...] | None = None      # per layer (hybrid models); default bits
    layer_weights: tuple[str, ...] | None = None   # per layer; default weights
    positions: bool = False      # a learned position table of `context` rows

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUES:
            raise ValueError(f"technique must be one of {', '.join(TECHNIQUES)}, not "
                             f"{self.technique!r}")
        for name in ("d_model", "heads", "d_ff", "n_layers", "steps", "batch", "context",
                     "eval_batches"):
            v = getattr(self, name)
            check_count(f"RunConfig.{name}", v)
        if self.d_model % self.heads:
            raise ValueError(f"RunConfig.heads must divide d_model = {self.d_model}, not "
                             f"{self.heads}")
        if isinstance(self.r, bool) or not isinstance(self.r, int) or not 0 <= self.r <= 15:
            raise ValueError(f"RunConfig.r must be an integer shift in 0..15, not {self.r!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"RunConfig.seed must be a non-negative integer, not {self.seed!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or \
                not 1 <= self.bits <= 4:
            raise ValueError(f"RunConfig.bits must be 1, 2, 3 or 4, not {self.bits!r}")
        if self.weights not in ("binary", "ternary"):
            raise ValueError(f"RunConfig.weights must be 'binary' or 'ternary', not "
                             f"{self.weights!r}")
        for name, default in (("layer_bits", self.bits), ("layer_weights", self.weights)):
            value = getattr(self, name)
            value = (default,) * self.n_layers if value is None else tuple(value)
            if len(value) != self.n_layers:
                raise ValueError(f"RunConfig.{name} must give one value per layer "
                                 f"({self.n_layers}), not {value!r}")
            object.__setattr__(self, name, value)
        if any(b not in (1, 2, 3, 4) for b in self.layer_bits):
            raise ValueError(f"RunConfig.layer_bits must be 1..4 each, not {self.layer_bits}")
        if any(k not in ("binary", "ternary") for k in self.layer_weights):
            raise ValueError(f"RunConfig.layer_weights must be 'binary' or 'ternary' each, not "
                             f"{self.layer_weights}")

    @property
    def tech(self) -> Technique:
        return TECHNIQUES[self.technique]


@dataclass
class RunResult:
    config: RunConfig
    model: nn.Module
    valid_loss: float
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def bits_per_char(self) -> float:
        return self.valid_loss / math.log(2)


def make_model(cfg: RunConfig, vocab: int) -> nn.Module:
    tech = cfg.tech
    positions = cfg.context if cfg.positions else 0
    if tech.float_model:
        return FloatLM(vocab=vocab, d_model=cfg.d_model, heads=cfg.heads, d_ff=cfg.d_ff,
                       n_layers=cfg.n_layers, seed=cfg.seed, positions=positions)
    bc = BinaryConfig(vocab=vocab, d_model=cfg.d_model, heads=cfg.heads, d_ff=cfg.d_ff,
                      n_layers=cfg.n_layers, r=cfg.r, stochastic=tech.stochastic,
                      clip=tech.clip, error_feedback=tech.error_feedback,
                      bits=cfg.layer_bits, weights=cfg.layer_weights, head_bits=cfg.bits,
                      head_weights=cfg.weights, positions=positions)
    return BinaryLM(bc, seed=cfg.seed)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate(model: nn.Module, corpus: Corpus, cfg: RunConfig) -> float:
    """Mean validation cross-entropy (nats per character) over fixed, seeded windows."""
    was = model.training
    model.eval()
    gen = batches(corpus.valid, batch=cfg.batch, context=cfg.context,
                  rng=np.random.default_rng(12345))
    total = 0.0
    for _ in range(cfg.eval_batches):
        x, y = next(gen)
        total += float(_loss(model(torch.from_numpy(x)), torch.from_numpy(y)))
    model.train(was)
    return total / cfg.eval_batches


def train(cfg: RunConfig, corpus: Corpus, *, teacher: nn.Module | None = None,
          progress: Callable[[int, float], None] | None = None) -> RunResult:
    """Train one model under ``cfg``; distillation techniques need the float ``teacher``."""
    tech = cfg.tech
    if tech.distill and teacher is None:
        raise ValueError(f"technique {cfg.technique!r} distils from the float twin: pass teacher=")
    torch.manual_seed(cfg.seed)
    model = make_model(cfg, corpus.vocab)
    lr = cfg.float_lr if tech.float_model else cfg.lr
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, cfg.steps // 20)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, cfg.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    if teacher is not None:
        teacher.eval()
    data = batches(corpus.train, batch=cfg.batch, context=cfg.context,
                   rng=np.random.default_rng(cfg.seed))
    history: list[tuple[int, float]] = []
    start = time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        x, y = (torch.from_numpy(a) for a in next(data))
        logits = model(x)
        loss = _loss(logits, y)
        if tech.distill:
            with torch.no_grad():
                soft = nn.functional.softmax(teacher(x), dim=-1)
            kl = nn.functional.kl_div(nn.functional.log_softmax(logits, dim=-1), soft,
                                      reduction="batchmean") / cfg.context
            loss = (1 - tech.distill) * loss + tech.distill * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tech.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), tech.grad_clip)
        opt.step()
        sched.step()
        model.after_step()
        if step % 50 == 0 or step == cfg.steps - 1:
            history.append((step, float(loss.detach())))
            if progress:
                progress(step, history[-1][1])
    seconds = time.perf_counter() - start
    return RunResult(cfg, model, evaluate(model, corpus, cfg), seconds, history)

