"""Train every technique under one budget and seed, and tabulate validation loss.

The float twin trains first (it is also the teacher of the distillation runs). Each binary run is
exported and its validation loss is measured on the exported integer model run by the golden
model (``softmax(logits * logit_scale)``), so the table describes the files, not the training
graph.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..host import golden
from ..host.params import ModelParams
from .corpus import Corpus, batches
from .export import export_model
from .loop import TECHNIQUES, RunConfig, RunResult, train

__all__ = ["Row", "compare", "golden_valid_loss", "format_table", "PRECISIONS", "PrecisionRow",
           "compare_precisions", "format_precision_table", "weight_bytes", "ops_per_token"]


@dataclass
class Row:
    technique: str
    valid_loss: float
    seconds: float
    float_loss: float

    @property
    def bits_per_char(self) -> float:
        return self.valid_loss / math.log(2)

    @property
    def ratio(self) -> float:
        return self.valid_loss / self.float_loss

    def as_dict(self) -> dict:
        return {"technique": self.technique, "valid_loss": round(self.valid_loss, 4),
                "bits_per_char": round(self.bits_per_char, 4),
                "ratio_to_float": round(self.ratio, 4), "train_seconds": round(self.seconds, 1)}


def golden_valid_loss(m: ModelParams, corpus: Corpus, cfg: RunConfig) -> float:
    """Validation cross-entropy of the exported model, logits from the golden model."""
    gen = batches(corpus.valid, batch=cfg.batch, context=cfg.context,
                  rng=np.random.default_rng(12345))
    total, count = 0.0, 0
    for _ in range(cfg.eval_batches):
        x, y = next(gen)
        for xi, yi in zip(x, y, strict=True):
            z = golden.model_logits(xi, m).astype(np.float64) * m.logit_scale
            z -= z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            total -= logp[np.arange(len(yi)), yi].sum()
            count += len(yi)
    return total / count


def compare(base: RunConfig, corpus: Corpus, techniques: list[str] | None = None, *,
            progress: Callable[[str, int, float], None] | None = None
            ) -> tuple[list[Row], dict[str, RunResult]]:
    """Train the float twin, then each binary technique; return table rows and the runs."""
    names = techniques or [t for t in TECHNIQUES if t != "float"]
    unknown = [n for n in names if n not in TECHNIQUES]
    if unknown:
        raise ValueError(f"unknown techniques {', '.join(unknown)}; known: {', '.join(TECHNIQUES)}")

    def report(name: str):
        return (lambda step, loss: progress(name, step, loss)) if progress else None

    teacher = train(replace(base, technique="float"), corpus, progress=report("float"))
    runs = {"float": teacher}
    rows = [Row("float", teacher.valid_loss, teacher.seconds, teacher.valid_loss)]
    for name in names:
        if name == "float":
            continue
        run = train(replace(base, technique=name), corpus, teacher=teacher.model,
                    progress=report(name))
        runs[name] = run
        exported = export_model(run.model, charset=corpus.charset)
        rows.append(Row(name, golden_valid_loss(exported, corpus, base), run.seconds,
                        teacher.valid_loss))
    return rows, runs


def format_table(rows: list[Row], base: RunConfig) -> str:
    lines = [f"budget: {base.steps} steps x batch {base.batch} x context {base.context}, seed "
             f"{base.seed}; D={base.d_model} H={base.heads} F={base.d_ff} L={base.n_layers}",
             f"{'technique':<16}{'valid loss':>11}{'bits/char':>11}{'/ float':>9}{'train s':>9}"]
    for r in rows:
        lines.append(f"{r.technique:<16}{r.valid_loss:>11.4f}{r.bits_per_char:>11.4f}"
                     f"{r.ratio:>9.3f}{r.seconds:>9.1f}")
    return "\n".join(lines)


def stderr_progress(every: int = 250) -> Callable[[str, int, float], None]:
    start = time.perf_counter()

    def show(name: str, step: int, loss: float) -> None:
        if step % every == 0:
            print(f"  [{time.perf_counter() - start:7.1f} s] {name:<15} step {step:>6}  "
                  f"loss {loss:.3f}", file=sys.stderr, flush=True)
    return show




#: The precisions of ``onebit train --compare``'s second table: A = 1..4, binary and ternary.
PRECISIONS = tuple((a, k) for a in (1, 2, 3, 4) for k in ("binary", "ternary"))


@dataclass
class PrecisionRow:
    bits: int
    weights: str
    valid_loss: float
    float_loss: float
    weight_bytes: int
    ops_per_token: int
    seconds: float

    def as_dict(self) -> dict:
        return {"bits": self.bits, "weights": self.weights,
                "valid_loss": round(self.valid_loss, 4),
                "bits_per_char": round(self.valid_loss / math.log(2), 4),
                "ratio_to_float": round(self.valid_loss / self.float_loss, 4),
                "weight_kb": round(self.weight_bytes / 1024, 1),
                "ops_per_token": self.ops_per_token, "train_seconds": round(self.seconds, 1)}


def weight_bytes(m: ModelParams) -> int:
    """Bytes of the model's packed weight planes (one bit a binary weight, two a ternary)."""
    total = int(m.head_planes().nbytes)
    for p in m.layers:
        total += sum(int(p.planes(n).nbytes) for n in ("Wq", "Wk", "Wv", "Wo", "W1", "W2"))
    return total


def ops_per_token(m: ModelParams, context: int) -> int:
    """The device's binary operations (XNOR or AND, and add: 2 a bit pair) for one token's
    products at a context of ``context`` tokens: each matrix's ``N x K`` times the activation
    planes A and weight planes (2 for ternary); the scores' ``A^2`` and the context's ``A``
    planes over ``context`` keys and values."""
    d = m.d_model
    ops = 0
    for p in m.layers:
        planes = p.bits * (2 if p.weights == "ternary" else 1)
        ops += 2 * planes * (4 * d * d + 2 * d * p.d_ff)
        ops += 2 * context * d * (p.bits * p.bits + p.bits)
    ops += 2 * m.head_bits * (2 if m.head_weights == "ternary" else 1) * m.vocab * d
    return ops


def compare_precisions(base: RunConfig, corpus: Corpus, precisions=PRECISIONS, *,
                       progress: Callable[[str, int, float], None] | None = None,
                       on_row: Callable[[PrecisionRow, ModelParams], None] | None = None
                       ) -> tuple[list[PrecisionRow], dict[str, RunResult], float]:
    """Train the float twin, then ``base`` at each ``(bits, weights)`` (every layer and the
    head), each exported and measured on the golden model; the rows, the runs and the float
    twin's loss. Same budget and seed for every row. ``on_row(row, exported)`` is called as
    each row is measured, so a long run's finished rows are kept."""
    def report(name: str):
        return (lambda step, loss: progress(name, step, loss)) if progress else None

    teacher = train(replace(base, technique="float"), corpus, progress=report("float"))
    runs: dict[str, RunResult] = {"float": teacher}
    rows = []
    for bits, kind in precisions:
        cfg = replace(base, bits=bits, weights=kind, layer_bits=None, layer_weights=None)
        name = f"A{bits}-{kind}"
        run = train(cfg, corpus, teacher=teacher.model, progress=report(name))
        runs[name] = run
        exported = export_model(run.model, charset=corpus.charset)
        rows.append(PrecisionRow(bits, kind, golden_valid_loss(exported, corpus, cfg),
                                 teacher.valid_loss, weight_bytes(exported),
                                 ops_per_token(exported, base.context), run.seconds))
        if on_row:
            on_row(rows[-1], exported)
    return rows, runs, teacher.valid_loss


def format_precision_table(rows: list[PrecisionRow], base: RunConfig, float_loss: float) -> str:
    lines = [f"precisions ({base.technique}; budget {base.steps} steps x batch {base.batch} x "
             f"context {base.context}, seed {base.seed}): float twin {float_loss:.4f} nats/char",
             f"{'A':>3} {'weights':<8}{'valid loss':>11}{'bits/char':>11}{'/ float':>9}"
             f"{'weight KB':>11}{'Mops/token':>12}{'train s':>9}"]
    for r in rows:
        d = r.as_dict()
        lines.append(f"{r.bits:>3} {r.weights:<8}{d['valid_loss']:>11.4f}"
                     f"{d['bits_per_char']:>11.4f}{d['ratio_to_float']:>9.3f}"
                     f"{d['weight_kb']:>11.1f}{r.ops_per_token / 1e6:>12.2f}{r.seconds:>9.1f}")
    return "\n".join(lines)
