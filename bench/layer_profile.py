"""Where a layer's cycles go, step by step (``onebit bench layer --plot``).

The layer runs on Amaranth's simulator, whose transport samples the device's ``layer_step``
every cycle (``EngineStep``: the numerics' steps 1, 2, 3-5, 6, 7, 8 and the command's setup and
answer), once for a prefill of T tokens and then for single decode tokens. The profile's total
is checked against the cycles the device itself reports for the same commands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..host import Accelerator, golden
from ..host.device_config import DeviceConfig
from ..host.layer_layout import EngineStep
from ..host.random_model import random_activations, random_layer

__all__ = ["profile", "plot_profile", "LABELS"]

#: The plot's name for each step the engine reports (IDLE is between commands: not shown).
LABELS = {EngineStep.SETUP: "setup (checks)", EngineStep.QUANTISE: "1 quantise X",
          EngineStep.QKV: "2 Q, K, V", EngineStep.ATTENTION: "3-5 attention",
          EngineStep.OUT: "6 out + residual", EngineStep.FFN_UP: "7 FFN up",
          EngineStep.FFN_DOWN: "8 FFN down + residual", EngineStep.DONE: "answer"}


def profile(dev: DeviceConfig, *, t: int, decode: int, seed: int = 0) -> dict:
    """Cycles per step of a prefill of ``t`` tokens and of ``decode`` single tokens (mean), on
    Amaranth's simulator; ``device_cycles`` is what the device's LAYER answers count, and
    ``bit_exact`` whether every row equals the golden model's."""
    from ..sim.link_transport import AmaranthLinkTransport

    ly = dev.layer
    rng = np.random.default_rng(seed)
    p = random_layer(rng, d_model=ly.d_model, heads=ly.heads, d_ff=ly.max_ff)
    x = random_activations(rng, t + decode, ly.d_model)
    transport = AmaranthLinkTransport(dev, cycles_per_read=200_000)

    def snapshot() -> dict[int, int]:
        return dict(transport.step_cycles)

    def since(before: dict[int, int], scale: float = 1.0) -> dict[str, float]:
        now = transport.step_cycles
        return {s.name: (now.get(s, 0) - before.get(s, 0)) / scale for s in LABELS}

    with Accelerator(transport, timeout=3600) as acc:
        acc.load_layer(p)
        acc.reset_stats()
        before = snapshot()
        got = acc.layer(x[:t])
        pre, pre_dev = since(before), acc.stats.cycles
        before = snapshot()
        rows = [acc.decode(x[i]) for i in range(t, t + decode)]
        dec, dec_dev = since(before, decode), (acc.stats.cycles - pre_dev) / decode
    exact = bool(np.array_equal(np.concatenate([got, np.stack(rows)]), golden.layer(x, p)))
    return {"tokens": t, "decode_tokens": decode, "bit_exact": exact,
            "prefill": {"steps": pre, "total": sum(pre.values()), "device_cycles": pre_dev},
            "decode": {"steps": dec, "total": sum(dec.values()), "device_cycles": dec_dev}}


def plot_profile(r: dict, path: str | Path, title: str) -> Path:
    """A PNG: cycles per token of each step, prefill (its cycles over T) beside decode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in LABELS]
    pre = [r["prefill"]["steps"][n] / r["tokens"] for n in names]
    dec = [r["decode"]["steps"][n] for n in names]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    ax.barh(y - 0.2, pre, height=0.4,
            label=f"prefill of {r['tokens']} tokens ({r['prefill']['total'] / r['tokens']:.0f} "
                  f"cycles per token)")
    ax.barh(y + 0.2, dec, height=0.4,
            label=f"decode, one token on the KV cache ({r['decode']['total']:.0f} cycles)")
    ax.set_yticks(y, [LABELS[s] for s in LABELS])
    ax.invert_yaxis()
    ax.set(xlabel="cycles per token", title=title)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
