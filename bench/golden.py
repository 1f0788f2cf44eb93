"""Time the NumPy golden model on the reference layer (D=256, H=4, F=1024, T=64) at each
precision: A = 1, 2, 4 bits of activations, binary and ternary weights.

Every row is measured in the same run (best of ``repeats``), so the ratios to the A = 1 binary
row hold on a noisy machine; the numerics' goal is A = 4 at most 4 times A = 1.
"""

from __future__ import annotations

import time

import numpy as np

from .. import json_output
from ..host import golden, random_activations, random_layer

REFERENCE = {"d_model": 256, "heads": 4, "d_ff": 1024, "tokens": 64}
PRECISIONS = ((1, "binary"), (1, "ternary"), (2, "binary"), (2, "ternary"), (4, "binary"),
              (4, "ternary"))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_one(bits: int, weights: str, repeats: int) -> dict:
    """Best-of-``repeats`` seconds of a prefill of T tokens and of one decode step."""
    rng = np.random.default_rng(0)
    ref = REFERENCE
    p = random_layer(rng, d_model=ref["d_model"], heads=ref["heads"], d_ff=ref["d_ff"],
                     bits=bits, weights=weights)
    x = random_activations(rng, ref["tokens"], ref["d_model"])
    prefill = _best(lambda: golden.layer(x, p), repeats)
    decode = float("inf")
    for _ in range(repeats):
        cache = golden.KVCache(p.heads, p.head_dim, ref["tokens"], bits)
        golden.layer_step(x[:-1], p, cache)
        start = time.perf_counter()
        golden.layer_step(x[-1:], p, cache)
        decode = min(decode, time.perf_counter() - start)
    return {"bits": bits, "weights": weights, "prefill_s": prefill, "decode_step_s": decode,
            "prefill_tokens_per_s": ref["tokens"] / prefill}


def measure(repeats: int = 5) -> dict:
    rows = [measure_one(b, w, repeats) for b, w in PRECISIONS]
    base = rows[0]
    for r in rows:
        r["prefill_vs_1bit"] = r["prefill_s"] / base["prefill_s"]
        r["decode_vs_1bit"] = r["decode_step_s"] / base["decode_step_s"]
    return {**REFERENCE, "repeats": repeats, "rows": rows}


def run(*, json_out: bool = False, repeats: int = 5) -> int:
    """Print the golden model's timings; return 0."""
    r = measure(repeats)
    if json_out:
        print(json_output.dumps(r))
        return 0
    print(f"golden model, reference layer D={r['d_model']} H={r['heads']} F={r['d_ff']}"
          f" T={r['tokens']} (best of {repeats}; ratios to A = 1 binary, same run)")
    print(f"{'A':>3} {'weights':<8} {'prefill ms':>11} {'tokens/s':>9} {'x':>6} "
          f"{'decode ms':>10} {'x':>6}")
    for row in r["rows"]:
        print(f"{row['bits']:>3} {row['weights']:<8} {row['prefill_s'] * 1e3:>11.2f} "
              f"{row['prefill_tokens_per_s']:>9.0f} {row['prefill_vs_1bit']:>6.2f} "
              f"{row['decode_step_s'] * 1e3:>10.2f} {row['decode_vs_1bit']:>6.2f}")
    return 0
