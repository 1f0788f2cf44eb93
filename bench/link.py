"""``onebit bench link``: wire bytes of real commands, host packing speed, fault campaign.

Wire efficiency is counted on the bytes the real driver (``Accelerator``, its link client's
counts) exchanges with the device (``DeviceLink`` on Amaranth's simulator) while it loads a
D=256 layer's packed weights (Wq, Wk, Wv, Wo, W1, W2: 786,432 bits) into the weight store and
one token's activations (256 bits) into the activation store: payload bytes over bytes
sent, and over bytes sent and received (the answers). Packing speed is the driver's packing
of random bits, best of a few runs. ``--faults N`` also runs a fault-injection campaign of N
products.

Weight reuse (``stream_words``): the activation and weight words that ``linear`` sends for an
MLP of binary layers (1024 inputs, three 1024-wide layers, a 10-class head) on 500 inputs, on
each board's device, with the driver's plan (``plan_product``: resident weights, the cheaper
loop order) and with the order it replaced (each token block loads every weight block).

Tokens x weights (``--mlp N``, ``mlp_run``): that MLP on N inputs through ``linear`` on
Verilator, on each board's device: seconds on this machine, the bytes on the link
(``acc.stats``) against their floor (weights, activations and results once), and the time per
input those bytes take on a 3 Mbaud UART (10 bits a byte).
"""

from __future__ import annotations

import time

import numpy as np

from .. import json_output
from ..host import random_layer
from ..host.accelerator import Accelerator, _words
from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig
from ..host.params import WEIGHT_NAMES
from ..host.protocol import Opcode


def device(frame_bytes: int, d_model: int) -> DeviceConfig:
    """A device whose weight store holds the whole layer (D x 12 D bits)."""
    return DeviceConfig(core=CoreConfig(rows=4, cols=8, lanes=32, max_k=4 * d_model,
                                        max_t=64, max_n=4 * d_model),
                        frame_bytes=frame_bytes, act_words=2048,
                        weight_words=12 * d_model * d_model // 32, thresh_words=1024,
                        result_beats=512)


def _transfer(acc: Accelerator, opcode: Opcode, data: bytes) -> dict:
    link = acc.link.stats
    s0, r0 = link.sent, link.received
    acc._load(opcode, data)
    sent, received = link.sent - s0, link.received - r0
    return {"payload_bytes": len(data), "sent_bytes": sent, "received_bytes": received,
            "efficiency": len(data) / sent, "round_trip_efficiency": len(data) / (sent + received)}


def measure(frame_bytes: int = 4096, repeats: int = 5, d_model: int = 256) -> dict:
    from ..sim.link_transport import AmaranthLinkTransport

    rng = np.random.default_rng(0)
    layer = random_layer(rng, d_model=d_model, heads=4, d_ff=4 * d_model)
    dev = device(frame_bytes, d_model)
    weights = b"".join(_words(getattr(layer, name), 32) for name in WEIGHT_NAMES)
    token = _words(rng.integers(0, 2, (1, d_model), dtype=np.uint8), 32)
    with Accelerator(AmaranthLinkTransport(dev, cycles_per_read=20000), timeout=600) as acc:
        start = time.perf_counter()
        layer_r = _transfer(acc, Opcode.LOAD_WEIGHTS, weights)
        sim_s = time.perf_counter() - start
        token_r = _transfer(acc, Opcode.LOAD_ACTIVATIONS, token)
    bits = rng.integers(0, 2, (1024, 8192), dtype=np.uint8)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        packed = _words(bits, 32)
        best = min(best, time.perf_counter() - start)
    return {"frame_bytes": frame_bytes, "d_model": d_model, "layer_weights": layer_r,
            "token": token_r,
            "layer_load_sim_seconds": sim_s,
            "pack_input_mbit_per_s": bits.size / best / 1e6,
            "pack_output_mb_per_s": len(packed) / best / 1e6}


def stream_words(dev: DeviceConfig, inputs: int = 500,
                 widths: tuple[int, ...] = (1024, 1024, 1024, 1024, 10)) -> dict:
    """Words sent for the MLP's products: the plan's, and token blocks outside (the old order)."""
    from ..host.product_plan import plan_product

    planned = old = 0
    c = dev.core
    for k_all, n in zip(widths[:-1], widths[1:], strict=True):
        for k0 in range(0, k_all, c.max_k):
            k = min(c.max_k, k_all - k0)
            kw = -(-k // c.lanes)
            p = plan_product(dev, inputs, n, k, 0)
            planned += p.link_words
            old += inputs * kw + -(-inputs // p.t_block) * n * kw
    return {"inputs": inputs, "widths": list(widths), "planned_words": planned,
            "old_words": old, "ratio": old / planned,
            "planned_bytes": planned * dev.word_bytes, "old_bytes": old * dev.word_bytes}


MLP_WIDTHS = (1024, 1024, 1024, 1024, 10)
UART_BAUD = 3_000_000


def mlp_run(dev: DeviceConfig, inputs: int, *, seed: int = 0) -> dict:
    """The MLP (``MLP_WIDTHS``, binary, thresholds on the hidden layers) on ``inputs`` random
    inputs through ``linear`` on Verilator, checked against golden; its time and link bytes."""
    from ..host import golden

    rng = np.random.default_rng(seed)
    ws = [rng.integers(0, 2, (n, k), dtype=np.uint8)
          for k, n in zip(MLP_WIDTHS[:-1], MLP_WIDTHS[1:], strict=True)]
    ths = [rng.integers(-16, 17, n) for n in MLP_WIDTHS[1:-1]] + [None]
    x = rng.integers(0, 2, (inputs, MLP_WIDTHS[0]), dtype=np.uint8)
    start = time.perf_counter()
    with Accelerator.open("sim", simulator="verilator", config=dev) as acc:
        opened = time.perf_counter()
        acc.reset_stats()
        q, g = x, x
        for w, th in zip(ws, ths, strict=True):
            q, g = acc.linear(q, w, th), golden.linear(g, w, th)
            if not np.array_equal(q, g):
                raise AssertionError(f"the device's MLP differs from golden at {w.shape}")
        seconds = time.perf_counter() - opened
        calls = acc.stats.calls
    sent, received = sum(c.sent for c in calls), sum(c.received for c in calls)
    floor = sum(c.floor for c in calls)
    return {"inputs": inputs, "seconds": seconds, "open_seconds": opened - start,
            "sent_bytes": sent, "received_bytes": received, "floor_bytes": floor,
            "overhead": (sent + received) / floor,
            "bytes_per_input": (sent + received) / inputs,
            "uart_ms_per_input": (sent + received) * 10 / UART_BAUD / inputs * 1e3}


def run(*, json_out: bool = False, frame_bytes: int = 4096, faults: int = 0,
        d_model: int = 256, mlp: int = 0, boards: list[str] | None = None) -> int:
    """Print the link figures; return 0."""
    r = measure(frame_bytes, d_model=d_model)
    if faults:
        from ..sim.fault_injection import run_campaign

        small = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=24, max_t=4,
                                             max_n=12),
                             frame_bytes=8, act_words=16, weight_words=24, thresh_words=8,
                             result_beats=16)
        report = run_campaign(small, products=faults, rate=0.35, seed=3)
        r["faults"] = {"injected": report.injected, "detected": report.detected,
                       "harmless": report.harmless, "products": report.products,
                       "commands": report.commands, "retries": report.retries,
                       "wrong_results": report.wrong_results}
    from ..flow.boards import boards as all_boards

    known = all_boards()
    chosen = [(name, known[name]) for name in (boards or sorted(known))]
    r["weight_reuse"] = {name: stream_words(b.device) for name, b in chosen}
    if mlp:
        r["mlp"] = {name: mlp_run(b.device, mlp) for name, b in chosen}
    if json_out:
        print(json_output.dumps(r))
        return 0
    print(f"host link, {r['frame_bytes']}-byte LOAD frames, driver and gateware on Amaranth's "
          f"simulator")
    d = r["d_model"]
    for name, key in ((f"D={d} layer weights", "layer_weights"), (f"one token (D={d})", "token")):
        x = r[key]
        print(f"  {name}: {x['payload_bytes']} payload bytes, {x['sent_bytes']} sent, "
              f"{x['received_bytes']} received: efficiency {x['efficiency']:.2%} "
              f"({x['round_trip_efficiency']:.2%} counting the answers)")
    print(f"  host packing: {r['pack_input_mbit_per_s']:.0f} Mbit/s of 0/1 input, "
          f"{r['pack_output_mb_per_s']:.0f} MB/s of packed output")
    print("weight reuse, MLP 1024-1024-1024-1024-10 on 500 inputs (activation + weight bytes):")
    for name, x in r["weight_reuse"].items():
        print(f"  {name}: {x['planned_bytes']:,} with resident weights, {x['old_bytes']:,} "
              f"with every weight block per token block ({x['ratio']:.1f}x)")
    if mlp:
        print(f"tokens x weights: the MLP on {mlp} inputs through linear on Verilator (link "
              f"bytes from acc.stats; UART at {UART_BAUD / 1e6:g} Mbaud, 10 bits a byte):")
        for name, x in r["mlp"].items():
            print(f"  {name}: {x['seconds']:.0f} s ({x['open_seconds']:.0f} s to build and "
                  f"open), {x['sent_bytes']:,} bytes sent + {x['received_bytes']:,} received "
                  f"= {x['overhead']:.3f}x the floor of {x['floor_bytes']:,}; "
                  f"{x['bytes_per_input']:,.0f} bytes an input: "
                  f"{x['uart_ms_per_input']:.3f} ms an input on the UART")
    if faults:
        print("fault injection (rate 0.35 per frame):")
        print(report.table())
    return 0
