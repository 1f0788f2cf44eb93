"""Time the NumPy golden model on the reference layer (D=256, H=4, F=1024, T=64)."""

from __future__ import annotations

import time

import numpy as np

from .. import json_output
from ..host import golden, random_activations, random_layer

REFERENCE = {"d_model": 256, "heads": 4, "d_ff": 1024, "tokens": 64}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(repeats: int = 5) -> dict[str, float]:
    """Return best-of-``repeats`` seconds for a prefill of T tokens and one decode step."""
    rng = np.random.default_rng(0)
    ref = REFERENCE
    p = random_layer(rng, d_model=ref["d_model"], heads=ref["heads"], d_ff=ref["d_ff"])
    x = random_activations(rng, ref["tokens"], ref["d_model"])
    prefill = _best(lambda: golden.layer(x, p), repeats)

    def decode_last() -> None:
        cache = golden.KVCache(p.heads, p.head_dim, ref["tokens"])
        golden.layer_step(x[:-1], p, cache)
        start = time.perf_counter()
        golden.layer_step(x[-1:], p, cache)
        decode_last.seconds = min(decode_last.seconds, time.perf_counter() - start)

    decode_last.seconds = float("inf")
    for _ in range(repeats):
        decode_last()
    return {**ref, "prefill_s": prefill, "decode_step_s": decode_last.seconds,
            "prefill_tokens_per_s": ref["tokens"] / prefill}


def run(*, json_out: bool = False, repeats: int = 5) -> int:
    """Print the golden model's timings; return 0."""
    r = measure(repeats)
    if json_out:
        print(json_output.dumps(r))
        return 0
    print(f"golden model, reference layer D={r['d_model']} H={r['heads']} F={r['d_ff']}"
          f" T={r['tokens']} (best of {repeats})")
    print(f"  prefill of {r['tokens']} tokens: {r['prefill_s'] * 1e3:8.2f} ms"
          f"  ({r['prefill_tokens_per_s']:.0f} tokens/s)")
    print(f"  one decode step (token {r['tokens']}, cache of {r['tokens'] - 1}):"
          f" {r['decode_step_s'] * 1e3:8.2f} ms")
    return 0
