"""``onebit train``: train a 1-bit character LM on Python's documentation, export it, and compare
the training techniques under one budget (needs the ``onebit[train]`` extra: PyTorch)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path


def model_card(model, cfg, loss: float, float_loss: float | None) -> dict:
    """The model card written beside a trained model (the shipped one is
    ``host/default_model.json``): what training measured, the configuration, each layer's
    precision, the head's and the position table's size."""
    card = {"technique": cfg.technique, "valid_loss": round(loss, 4),
            "bits_per_char": round(loss / math.log(2), 4)}
    if float_loss is not None:
        card.update(float_valid_loss=round(float_loss, 4),
                    float_bits_per_char=round(float_loss / math.log(2), 4),
                    ratio_to_float=round(loss / float_loss, 4))
    card["config"] = {k: v for k, v in asdict(cfg).items() if k not in ("technique",
                                                                      "eval_batches")}
    card["layers"] = [{"bits": p.bits, "weights": p.weights} for p in model.layers]
    card["head"] = {"bits": model.head_bits, "weights": model.head_weights}
    card["positions"] = 0 if model.P is None else int(model.P.shape[0])
    card["corpus"] = "pydoc_data.topics (Python 3.11), last 10% held out for validation"
    return card


def run(*, technique: str, compare: str | None, steps: int, seed: int, out: str | None,
        json_out: bool, d_model: int, heads: int, d_ff: int, n_layers: int,
        context: int, batch: int, bits: int = 1, weights: str = "binary",
        layer_bits: tuple[int, ...] | None = None, layer_weights: tuple[str, ...] | None = None,
        positions: bool = False, precisions: tuple[tuple[int, str], ...] | None = None) -> int:
    """``compare``: None (train one model), ``"techniques"``, ``"precisions"`` or ``"both"``
    (the tables of ``onebit train --compare``); ``precisions``: the precision table's rows
    (``(bits, kind)``; default all of ``PRECISIONS``)."""
    if importlib.util.find_spec("torch") is None:
        print("onebit train needs PyTorch: pip install 'onebit[train]' (torch==2.13.0, a CPU "
              "build)", file=sys.stderr)
        return 2
    from ..train.compare import (
        PRECISIONS,
        compare_precisions,
        format_precision_table,
        format_table,
        golden_valid_loss,
        stderr_progress,
    )
    from ..train.compare import compare as run_compare
    from ..train.corpus import load_corpus
    from ..train.export import export_model
    from ..train.loop import RunConfig, train

    try:
        base = RunConfig(technique=technique, steps=steps, seed=seed, d_model=d_model,
                         heads=heads, d_ff=d_ff, n_layers=n_layers, context=context, batch=batch,
                         bits=bits, weights=weights, layer_bits=layer_bits,
                         layer_weights=layer_weights, positions=positions)
    except ValueError as e:
        print(f"onebit train: {e}", file=sys.stderr)
        return 2
    corpus = load_corpus()
    progress = stderr_progress()
    out_dir = Path(out or "build/train")
    if compare:
        out_dir.mkdir(parents=True, exist_ok=True)
        tables = {}
        if compare in ("techniques", "both"):
            rows, runs = run_compare(base, corpus, progress=progress)
            for name, r in runs.items():
                if name != "float":
                    export_model(r.model, charset=corpus.charset).save(out_dir / f"{name}.npz")
            tables["techniques"] = {"config": asdict(base), "rows": [r.as_dict() for r in rows]}
            (out_dir / "techniques.json").write_text(json.dumps(tables["techniques"], indent=1))
            if not json_out:
                print(format_table(rows, base))
        if compare in ("precisions", "both"):
            done: list[dict] = []

            def keep_row(row, exported):
                # each finished row is saved at once: a long run stopped midway keeps its rows
                exported.save(out_dir / f"A{row.bits}-{row.weights}.npz")
                done.append(row.as_dict())
                partial = {"config": asdict(base), "float_valid_loss": row.float_loss,
                           "rows": done}
                (out_dir / "precisions.json").write_text(json.dumps(partial, indent=1))
                print(f"precisions: A = {row.bits} {row.weights}: {json.dumps(done[-1])}",
                      file=sys.stderr)

            prows, _, float_loss = compare_precisions(
                base, corpus, precisions=precisions or PRECISIONS, progress=progress,
                on_row=keep_row)
            tables["precisions"] = {"config": asdict(base), "float_valid_loss": float_loss,
                                    "rows": [r.as_dict() for r in prows]}
            if not json_out:
                print(format_precision_table(prows, base, float_loss))
        if json_out:
            print(json.dumps(tables))
        return 0
    teacher = None
    float_loss = None
    if base.tech.distill or base.tech.float_model:
        t = train(replace(base, technique="float"), corpus,
                  progress=lambda s, loss: progress("float", s, loss))
        teacher, float_loss = t.model, t.valid_loss
    if base.tech.float_model:
        print(json.dumps({"technique": "float", "valid_loss": float_loss}) if json_out else
              f"float twin: valid loss {float_loss:.4f} nats/char")
        return 0
    r = train(base, corpus, teacher=teacher, progress=lambda s, loss: progress(technique, s, loss))
    model = export_model(r.model, charset=corpus.charset)
    path = Path(out) if out and out.endswith(".npz") else out_dir / f"{technique}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    loss = golden_valid_loss(model, corpus, base)
    summary = {"technique": technique, "model": str(path), "valid_loss": round(loss, 4),
               "bits_per_char": round(loss / math.log(2), 4),
               "float_valid_loss": None if float_loss is None else round(float_loss, 4),
               "bytes": path.stat().st_size, "train_seconds": round(r.seconds, 1)}
    card = model_card(model, base, loss, float_loss)
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    summary["card"] = str(path.with_suffix(".json"))
    if json_out:
        print(json.dumps(summary))
    else:
        print(f"wrote {path} ({summary['bytes']} bytes): valid loss {loss:.4f} nats/char, "
              f"{summary['bits_per_char']:.4f} bits/char (exported model on the golden model)")
        if float_loss is not None:
            print(f"float twin (same budget): {float_loss:.4f} nats/char, ratio "
                  f"{loss / float_loss:.3f}")
    return 0
