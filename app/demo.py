"""``onebit demo``: generate tokens with the default model and check them against the golden
model."""

from __future__ import annotations

import time

import numpy as np

from .host import golden, random_model

DEFAULT = {"vocab": 64, "d_model": 64, "heads": 2, "d_ff": 128, "n_layers": 2}


def run_demo(*, seed: int = 0, tokens: int = 16) -> int:
    """Run the demo; return 0 on bit-exact agreement, 1 otherwise."""
    rng = np.random.default_rng(seed)
    m = random_model(rng, **DEFAULT)
    prompt = rng.integers(0, m.vocab, 8)
    print(f"onebit demo: seeded random 1-bit LM (seed {seed}): V={m.vocab} D={m.d_model}"
          f" H={m.layers[0].heads} F={m.layers[0].d_ff} L={len(m.layers)}")
    print(f"prompt tokens:    {prompt.tolist()}")
    start = time.perf_counter()
    out = golden.generate(prompt, tokens, m)
    seconds = time.perf_counter() - start
    print(f"generated tokens: {out.tolist()}")
    # Check greedy decoding with the KV cache against full-sequence logits recomputed each step.
    seq = list(prompt)
    for tok in out:
        logits = golden.model_logits(np.array(seq), m)[-1]
        if int(np.argmax(logits)) != int(tok):
            print("MISMATCH between cached decode and full-sequence recompute")
            return 1
        seq.append(int(tok))
    print(f"decode with KV cache == full-sequence recompute: bit-exact ({tokens} tokens)")
    print(f"golden model (NumPy): {tokens / seconds:.0f} tokens/s")
    return 0
