"""``onebit quantize``: the command around :func:`onebit.host.quantize.quantize`; with
``--json`` the summary, or the error, is one JSON object on standard output."""

from __future__ import annotations

import json
import sys

from ..host.quantize import QuantizeError, quantize

__all__ = ["main"]


def main(src: str, dst: str, *, method: str, seed: int, heads: int | None,
         json_out: bool, bits: int = 1, weights: str = "binary") -> int:
    """The command: print the summary (or the error) and return the exit status."""
    try:
        summary = quantize(src, dst, method=method, seed=seed, heads=heads, bits=bits,
                           weights=weights)
    except (QuantizeError, OSError, MemoryError) as e:
        if json_out:
            print(json.dumps({"error": str(e)}))
        else:
            print(f"onebit quantize: {e}", file=sys.stderr)
        return 2
    if json_out:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['output']}: {summary['format']}, {summary['layers']} layer(s), "
              f"D={summary['d_model']} H={summary['heads']} F={summary['d_ff']}, "
              f"{summary['bits']}-bit activations, {summary['weights']} weights"
              f"{' (' + summary['method'] + ')' if summary['weights'] == 'binary' else ''}, "
              f"shift r={summary['r']}, negative-gamma flips "
              f"{sum(summary['flipped'].values())}")
    return 0
