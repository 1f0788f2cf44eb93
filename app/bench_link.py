"""``onebit bench link``: wire efficiency of the host link's framing and host packing speed.

Efficiency is measured by encoding real frames (``onebit.host.protocol.encode_frame``) of a
D=256 layer's packed weights (Wq, Wk, Wv, Wo, W1, W2: 786,432 bits) and of one token's packed
activations, and dividing payload bytes by wire bytes. Packing speed is ``pack_bits`` on
random bits, best of a few runs.
"""

from __future__ import annotations

import json
import time

import numpy as np

from .host import pack_bits, random_layer
from .host.protocol import MAX_PAYLOAD, encode_frame


def _framed(payload: bytes, frame_payload: int) -> int:
    wire = 0
    for i in range(0, len(payload), frame_payload):
        wire += len(encode_frame(0x03, payload[i:i + frame_payload]))
    return wire


def measure(frame_payload: int = 4096, repeats: int = 5) -> dict:
    """Return payload/wire ratios and packing throughput."""
    if not 1 <= frame_payload <= MAX_PAYLOAD:
        raise ValueError(f"frame payload must be in 1..{MAX_PAYLOAD}, not {frame_payload}")
    rng = np.random.default_rng(0)
    layer = random_layer(rng, d_model=256, heads=4, d_ff=1024)
    weights = b"".join(layer.packed(n).tobytes() for n in ("Wq", "Wk", "Wv", "Wo", "W1", "W2"))
    token = pack_bits(rng.integers(0, 2, 256, dtype=np.uint8)).tobytes()
    bits = rng.integers(0, 2, (1024, 8192), dtype=np.uint8)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        packed = pack_bits(bits)
        best = min(best, time.perf_counter() - start)
    return {
        "frame_payload": frame_payload,
        "layer_weight_bytes": len(weights),
        "layer_weight_wire_bytes": _framed(weights, frame_payload),
        "layer_weight_efficiency": len(weights) / _framed(weights, frame_payload),
        "token_bytes": len(token),
        "token_wire_bytes": _framed(token, frame_payload),
        "token_efficiency": len(token) / _framed(token, frame_payload),
        "pack_input_mbit_per_s": bits.size / best / 1e6,
        "pack_output_mb_per_s": packed.nbytes / best / 1e6,
    }


def run(*, json_out: bool = False, frame_payload: int = 4096) -> int:
    """Print the link figures; return 0."""
    r = measure(frame_payload)
    if json_out:
        print(json.dumps(r))
        return 0
    print(f"host link framing (9 bytes a frame), {r['frame_payload']}-byte frame payloads")
    print(f"  D=256 layer weights: {r['layer_weight_bytes']} payload bytes, "
          f"{r['layer_weight_wire_bytes']} on the wire, efficiency "
          f"{r['layer_weight_efficiency']:.2%}")
    print(f"  one token's activations (D=256): {r['token_bytes']} payload bytes, "
          f"{r['token_wire_bytes']} on the wire, efficiency {r['token_efficiency']:.2%}")
    print(f"  host packing (pack_bits): {r['pack_input_mbit_per_s']:.0f} Mbit/s of 0/1 input, "
          f"{r['pack_output_mb_per_s']:.0f} MB/s of packed output")
    return 0
