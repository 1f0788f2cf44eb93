"""``onebit train``: train a 1-bit character LM on Python's documentation, export it, and compare
the training techniques under one budget (needs the ``onebit[train]`` extra: PyTorch)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path


def run(*, technique: str, compare: bool, steps: int, seed: int, out: str | None,
        json_out: bool, d_model: int, heads: int, d_ff: int, n_layers: int,
        context: int, batch: int) -> int:
    if importlib.util.find_spec("torch") is None:
        print("onebit train needs PyTorch: pip install 'onebit[train]' (torch==2.13.0, a CPU "
              "build)", file=sys.stderr)
        return 2
    from ..train.compare import compare as run_compare
    from ..train.compare import format_table, golden_valid_loss, stderr_progress
    from ..train.corpus import load_corpus
    from ..train.export import export_model
    from ..train.loop import RunConfig, train

    try:
        base = RunConfig(technique=technique, steps=steps, seed=seed, d_model=d_model,
                         heads=heads, d_ff=d_ff, n_layers=n_layers, context=context, batch=batch)
    except ValueError as e:
        print(f"onebit train: {e}", file=sys.stderr)
        return 2
    corpus = load_corpus()
    progress = stderr_progress()
    out_dir = Path(out or "build/train")
    if compare:
        rows, runs = run_compare(base, corpus, progress=progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, r in runs.items():
            if name != "float":
                export_model(r.model, charset=corpus.charset).save(out_dir / f"{name}.npz")
        table = {"config": asdict(base), "rows": [r.as_dict() for r in rows]}
        (out_dir / "techniques.json").write_text(json.dumps(table, indent=1))
        print(json.dumps(table) if json_out else format_table(rows, base))
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
    if json_out:
        print(json.dumps(summary))
    else:
        print(f"wrote {path} ({summary['bytes']} bytes): valid loss {loss:.4f} nats/char, "
              f"{summary['bits_per_char']:.4f} bits/char (exported model on the golden model)")
        if float_loss is not None:
            print(f"float twin (same budget): {float_loss:.4f} nats/char, ratio "
                  f"{loss / float_loss:.3f}")
    return 0
