"""``onebit bench layer``: the reference layer (D=256, H=4, F=1024, T=64) on the gateware.

The whole layer runs on the simulated device (``DeviceLink`` with its layer engine, Verilator by
default) through the host driver: one prefill of T tokens, then ``decode`` single tokens on the
KV cache, every output checked against the golden model. The device's LAYER answers give the
cycles; array utilization is the array's ideal cycles for the layer's four GEMMs (work at the
peak of ``rows x cols x lanes`` lanes) over the cycles taken. Prefill runs on the R x C array;
decode (T = 1) on the GEMV unit, which has the same ``rows x cols x lanes`` lanes and reads a
line of ``rows x cols`` weight words a cycle (``onebit.hdl.core.gemv``). In the same run the golden
model's NumPy time for the same work is measured, and the accelerator's time is projected at the
clock of each supported board (cycles only; the link's transfer time is not included).
"""

from __future__ import annotations

import time

import numpy as np

from .. import json_output
from ..host import Accelerator, golden
from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig, LayerConfig, gemv_problem
from ..host.random_model import random_activations, random_layer

REFERENCE = {"tokens": 64, "d_model": 256, "heads": 4, "d_ff": 1024}


def reference_device(rows: int = 4, cols: int = 4, lanes: int = 32, *, decode: int = 4,
                     t: int = 64, d: int = 256, heads: int = 4, f: int = 1024,
                     bits: int = 1, ternary: bool = False) -> DeviceConfig:
    """A device holding one reference layer of up to ``bits``-bit activations (and ternary
    weights) and a KV cache for ``t + decode`` tokens; its weight store has ``rows x cols``
    banks (when a power of two) for decode on the GEMV unit."""
    from dataclasses import replace

    from ..host.layer_layout import (
        act_regions,
        layer_thresh_count,
        layer_weight_words,
        param_words_per_layer,
    )

    copies = 2 if ternary else 1
    bits = max(bits, 2) if ternary else bits     # ternary weights run on the multi-bit engine
    core = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=bits * copies * max(d, f),
                      max_t=t, max_n=max(3 * d, f), max_bits=bits)
    ly = LayerConfig(d_model=d, heads=heads, max_ff=f, kv_capacity=t + decode, kv_slots=1,
                     res_words=t * d // cols, param_words=1 << 16, max_bits=bits,
                     weight_kinds=("binary", "ternary") if ternary else ("binary",))
    banks = rows * cols
    if banks & (banks - 1) or gemv_problem(d, lanes=lanes, cols=cols, banks=banks):
        banks = 1                   # decode then runs on the array
    roomy = DeviceConfig(core=core, frame_bytes=4096, act_words=1 << 20, weight_words=1 << 20,
                         thresh_words=1 << 16, result_beats=64, weight_banks=banks, layer=ly)
    return replace(roomy, act_words=act_regions(roomy)["end"],
                   weight_words=layer_weight_words(roomy, f),
                   thresh_words=max(1, layer_thresh_count(roomy, f)),
                   layer=replace(ly, param_words=param_words_per_layer(roomy)))


def measure(dev: DeviceConfig, *, sim: str = "verilator", decode: int = 4, seed: int = 0,
            t: int = 64, repeats: int = 3, bits: int = 1, weights: str = "binary") -> dict:
    """Prefill ``t`` tokens and decode ``decode`` more of a ``bits``-bit layer on ``dev``;
    cycles, utilization (the useful binary operations, ``bits`` planes of each product, over
    the array's peak), golden time and board projections as a dict (``bit_exact`` says
    whether every row matched)."""
    ly = dev.layer
    rng = np.random.default_rng(seed)
    p = random_layer(rng, d_model=ly.d_model, heads=ly.heads, d_ff=ly.max_ff, bits=bits,
                     weights=weights)
    x = random_activations(rng, t + decode, ly.d_model)
    want = golden.layer(x, p)
    with Accelerator.open("sim", simulator=sim, config=dev, timeout=3600) as acc:
        acc.load_layer(p)
        acc.reset_stats()
        got = acc.layer(x[:t])
        pre = (acc.stats.cycles, acc.stats.ideal, acc.stats.active)
        rows = [acc.decode(x[i]) for i in range(t, t + decode)]
        dec = (acc.stats.cycles - pre[0], acc.stats.ideal - pre[1], acc.stats.active - pre[2])
    exact = bool(np.array_equal(np.concatenate([got, np.stack(rows)]), want))

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    golden_prefill = best(lambda: golden.layer(x[:t], p))

    def golden_decode():
        cache = golden.KVCache(p.heads, p.head_dim, t + decode, p.bits)
        golden.layer_step(x[:t], p, cache)
        start = time.perf_counter()
        for i in range(t, t + decode):
            golden.layer_step(x[i:i + 1], p, cache)
        return time.perf_counter() - start

    golden_decode_s = min(golden_decode() for _ in range(repeats)) / decode
    c = dev.core
    result = {
        "layer": {"tokens": t, "d_model": ly.d_model, "heads": ly.heads, "d_ff": ly.max_ff},
        "array": [c.rows, c.cols, c.lanes], "sim": sim, "bits": bits, "weights": weights,
        "engine_bits": ly.max_bits, "bit_exact": exact,
        "prefill": {"cycles": pre[0], "ideal": pre[1], "active": pre[2],
                    "utilization": pre[1] / pre[0], "golden_seconds": golden_prefill},
        "decode": {"tokens": decode, "cycles_per_token": dec[0] / decode,
                   "ideal_per_token": dec[1] / decode, "utilization": dec[1] / dec[0],
                   "golden_seconds_per_token": golden_decode_s},
        "boards": [],
    }
    from ..flow.boards import boards

    for name, b in boards().items():
        hz = b.clock_hz()
        pre_s, dec_s = pre[0] / hz, dec[0] / decode / hz
        result["boards"].append({
            "board": name, "clock_mhz": hz / 1e6, "prefill_seconds": pre_s,
            "decode_seconds_per_token": dec_s, "prefill_speedup_vs_golden": golden_prefill / pre_s,
            "decode_speedup_vs_golden": golden_decode_s / dec_s})
    return result


def run(*, json_out: bool = False, rows: int = 4, cols: int = 4, lanes: int = 32,
        sim: str = "verilator", decode: int = 4, plot: str | None = None,
        bits: tuple[int, ...] = (1,), weights: str = "binary") -> int:
    """One A, binary: the figures below. Several, or ternary: a row per A (binary A = 1 on the
    one-bit engine, the others on one engine built for the largest A and the weights), every
    row checked against golden."""
    if tuple(bits) != (1,) or weights != "binary":
        return _run_precisions(json_out=json_out, rows=rows, cols=cols, lanes=lanes, sim=sim,
                               decode=decode, bits=bits, weights=weights)
    dev = reference_device(rows, cols, lanes, decode=decode)
    r = measure(dev, sim=sim, decode=decode)
    if plot:
        from .layer_profile import plot_profile, profile

        prof = profile(dev, t=REFERENCE["tokens"], decode=decode)
        r["profile"] = prof
        r["bit_exact"] &= prof["bit_exact"]
        plot_profile(prof, plot, f"Reference layer D=256 H=4 F=1024 on a {rows}x{cols}x{lanes} "
                                 f"array: where a token's cycles go")
    if json_out:
        print(json_output.dumps(r))
        return 0 if r["bit_exact"] else 1
    pre, dec = r["prefill"], r["decode"]
    print(f"reference layer D=256 H=4 F=1024, T=64 prefill + {decode} decode tokens, "
          f"{rows}x{cols}x{lanes} array on {sim}; bit-exact with golden: "
          f"{'yes' if r['bit_exact'] else 'NO'}")
    print(f"prefill: {pre['cycles']} cycles (ideal {pre['ideal']:.0f}), array utilization "
          f"{100 * pre['utilization']:.1f}% (target 90%)")
    print(f"decode:  {dec['cycles_per_token']:.0f} cycles per token (ideal "
          f"{dec['ideal_per_token']:.0f}), array utilization {100 * dec['utilization']:.1f}% "
          f"(target 75%)")
    print(f"golden (NumPy, this machine): prefill {1e3 * pre['golden_seconds']:.2f} ms, decode "
          f"{1e3 * dec['golden_seconds_per_token']:.2f} ms per token")
    print("projected at each board build's target clock (docs/build.md says which builds meet "
          "it; device cycles only, no link time):")
    print(f"{'board':<14}{'clock':>8}{'prefill':>12}{'x golden':>10}{'decode/tok':>12}"
          f"{'x golden':>10}")
    if plot:
        p = r["profile"]
        print(f"profile (Amaranth's simulator): prefill {p['prefill']['total']:.0f} cycles in the "
              f"steps ({p['prefill']['device_cycles']} by the device's count), decode "
              f"{p['decode']['total']:.0f} per token ({p['decode']['device_cycles']:.0f}); plot: "
              f"{plot}")
    for b in r["boards"]:
        print(f"{b['board']:<14}{b['clock_mhz']:>7.1f}M{1e3 * b['prefill_seconds']:>10.3f}ms"
              f"{b['prefill_speedup_vs_golden']:>10.2f}{1e3 * b['decode_seconds_per_token']:>10.3f}"
              f"ms{b['decode_speedup_vs_golden']:>10.2f}")
    return 0 if r["bit_exact"] else 1


def _run_precisions(*, json_out: bool, rows: int, cols: int, lanes: int, sim: str, decode: int,
                    bits: tuple[int, ...], weights: str) -> int:
    top, ternary = max(bits), weights == "ternary"
    rows_out = []
    for a in sorted(set(bits)):
        one = a == 1 and not ternary
        dev = reference_device(rows, cols, lanes, decode=decode, bits=1 if one else top,
                               ternary=ternary)
        rows_out.append(measure(dev, sim=sim, decode=decode, bits=a, repeats=1,
                                weights=weights))
    exact = all(r["bit_exact"] for r in rows_out)
    if json_out:
        print(json_output.dumps({"precisions": rows_out}))
        return 0 if exact else 1
    print(f"reference layer D=256 H=4 F=1024, T=64 prefill + {decode} decode tokens, "
          f"{rows}x{cols}x{lanes} array on {sim}, {weights} weights; bit-exact with golden: "
          f"{'yes' if exact else 'NO'}")
    one = rows_out[0] if rows_out[0]["bits"] == 1 and not ternary else None
    from ..flow.boards import board

    hz = board("ulx3s-85f").clock_hz()          # the board whose engine computes A > 1
    print(f"{'A':>2} {'engine':>7} {'prefill cycles':>15} {'util':>7} {'x A=1':>7} "
          f"{'decode/token':>13} {'util':>7} {'x A=1':>7} {f'tok/s @{hz / 1e6:.1f}MHz':>13}")
    for r in rows_out:
        pre, dec = r["prefill"], r["decode"]
        ratio_p = f"{pre['cycles'] / one['prefill']['cycles']:.2f}" if one else "-"
        ratio_d = (f"{dec['cycles_per_token'] / one['decode']['cycles_per_token']:.2f}"
                   if one else "-")
        print(f"{r['bits']:>2} {'A<=' + str(r['engine_bits']):>7} {pre['cycles']:>15} "
              f"{100 * pre['utilization']:>6.1f}% {ratio_p:>7} {dec['cycles_per_token']:>13.0f} "
              f"{100 * dec['utilization']:>6.1f}% {ratio_d:>7} "
              f"{hz / dec['cycles_per_token']:>13,.0f}")
    print("utilization: the useful binary operations (A planes of each product, and both "
          "planes of a ternary weight) over the array's peak; targets: prefill 85%, decode 70%")
    return 0 if exact else 1
