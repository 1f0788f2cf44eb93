"""``onebit demo``: generate text with the default model and check it against the golden model.

The default model is the trained character LM shipped in ``onebit/host/default_model.npz``
(``onebit train``); without it, a seeded random model of the same kind of shape.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np

from .host import ModelParams, golden, random_model

RANDOM_SHAPE = {"vocab": 64, "d_model": 64, "heads": 2, "d_ff": 128, "n_layers": 2}
PROMPT = "The return statement"


def default_model() -> ModelParams | None:
    """The shipped trained model, or None if this install has none."""
    ref = resources.files("onebit.host") / "default_model.npz"
    if not ref.is_file():
        return None
    with resources.as_file(ref) as path:
        return ModelParams.load(path)


def default_model_card() -> dict | None:
    """What the shipped model's training measured (``default_model.json``), if present."""
    import json

    ref = resources.files("onebit.host") / "default_model.json"
    return json.loads(ref.read_text()) if ref.is_file() else None


def _describe(m: ModelParams) -> str:
    p = m.layers[0]
    return f"V={m.vocab} D={m.d_model} H={p.heads} F={p.d_ff} L={len(m.layers)}"


def run_demo(*, seed: int = 0, tokens: int = 16, random: bool = False) -> int:
    """Run the demo; return 0 on bit-exact agreement, 1 otherwise."""
    m = None if random else default_model()
    if m is not None and m.charset:
        from .train.corpus import decode, encode
        prompt = encode(m.charset, PROMPT)
        print(f"onebit demo: trained 1-bit character LM ({_describe(m)})")
        card = default_model_card()
        if card:
            print(f"  validation {card['valid_loss']:.3f} nats/char ({card['bits_per_char']:.3f}"
                  f" bits/char); float twin {card['float_valid_loss']:.3f}, same budget "
                  f"(docs/training.md)")
        print(f"prompt: {PROMPT!r}")
    else:
        rng = np.random.default_rng(seed)
        m = random_model(rng, **RANDOM_SHAPE)
        prompt = rng.integers(0, m.vocab, 8)
        decode = None
        print(f"onebit demo: seeded random 1-bit LM (seed {seed}): {_describe(m)}")
        print(f"prompt tokens:    {prompt.tolist()}")
    start = time.perf_counter()
    out = golden.generate(prompt, tokens, m)
    seconds = time.perf_counter() - start
    if decode is not None:
        print(f"generated: {decode(m.charset, out)!r}")
    else:
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
