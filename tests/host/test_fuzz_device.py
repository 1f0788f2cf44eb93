"""Differential fuzzing: any device the host accepts computes exactly what the golden model
computes. Hypothesis draws a device (rows, cols, lanes, max_k, max_t, KV capacity, weight banks)
and a model to run on it (D, H, F, V, layers, prompt length; widths that are not multiples of 32
and feed-forward widths below and above D; each layer's and the head's activation bits, 1-4,
and weight kind, binary or ternary, on an engine built for them), runs ``layer``, ``decode``,
``generate`` and ``logits`` on Icarus (random idle cycles and backpressure on the link's
streams) and compares every integer with the golden model; the same for ``linear`` on GEMM
devices (cores of 1-4 activation bits, elements with or without count tables), at every
precision (1-4-bit activation levels, binary and ternary weights, 1-15 threshold levels). A
configuration the host refuses must be refused with a message that names the limit. The
device runs are in the slow run (``-m slow``; ``ONEBIT_FUZZ_EXAMPLES`` examples each, 5 by
default)."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit.host import Accelerator, golden
from onebit.host.core_config import CoreConfig, Op
from onebit.host.core_streams import expected_gemm
from onebit.host.device_config import DeviceConfig
from onebit.host.layer_driver import device_for
from onebit.host.random_model import random_activations, random_layer, random_model

# Run with -m slow only (about a minute an example on Icarus); ONEBIT_FUZZ_EXAMPLES draws more.
MANY = settings(max_examples=int(os.environ.get("ONEBIT_FUZZ_EXAMPLES", "5")), deadline=None,
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layer_cases(draw):
    lanes = draw(st.sampled_from([8, 16, 32]))
    cols = draw(st.sampled_from([c for c in (1, 2, 4) if lanes % c == 0]))
    rows = draw(st.integers(1, 3))
    d = lanes * draw(st.integers(1, 3))
    heads = draw(st.sampled_from([h for h in (1, 2, 3, 4) if d % h == 0]))
    f = draw(st.integers(1, 3 * d))
    n_layers = draw(st.integers(1, 2))
    bits = [draw(st.sampled_from([1, 1, 2, 3, 4])) for _ in range(n_layers)]
    head_bits = draw(st.sampled_from([1, 2, 3, 4]))
    kinds = [draw(st.sampled_from(["binary", "ternary"])) for _ in range(n_layers + 1)]
    vocab = draw(st.integers(2, 12))
    max_t = draw(st.integers(1, 6))
    prompt = draw(st.integers(1, 2 * max_t + 1))
    new = draw(st.integers(1, 3))
    kv = prompt + new + draw(st.integers(0, 4))
    top = max(bits + [head_bits]) * (2 if "ternary" in kinds else 1)
    max_k = top * -(-max(d, f) // lanes) * lanes + draw(st.sampled_from([0, 0, 1, lanes, 3 * d]))
    banks = draw(st.sampled_from([1, 2, 4, 8, 16]))
    seed = draw(st.integers(0, 2 ** 16))
    return dict(lanes=lanes, cols=cols, rows=rows, d=d, heads=heads, f=f, n_layers=n_layers,
                vocab=vocab, max_t=max_t, prompt=prompt, new=new, kv=kv, max_k=max_k,
                banks=banks, seed=seed, bits=bits, head_bits=head_bits, kinds=kinds)


def check_layer_case(case, simulator="icarus"):
    rng = np.random.default_rng(case["seed"])
    kinds = case.get("kinds", ["binary"] * (case["n_layers"] + 1))
    m = random_model(rng, vocab=case["vocab"], d_model=case["d"], heads=case["heads"],
                     d_ff=case["f"], n_layers=case["n_layers"],
                     head_bits=case.get("head_bits", 1), head_weights=kinds[-1])
    layers = tuple(random_layer(rng, d_model=case["d"], heads=case["heads"], d_ff=case["f"],
                                bits=a, weights=kind)
                   for a, kind in zip(case.get("bits", [1] * case["n_layers"]), kinds[:-1],
                                      strict=True))
    m = replace(m, layers=layers)
    try:
        dev = device_for(m, rows=case["rows"], cols=case["cols"], lanes=case["lanes"],
                         max_t=case["max_t"], kv_capacity=case["kv"], frame_bytes=1024,
                         max_k=case["max_k"], weight_banks=case["banks"])
    except ValueError as e:                      # refused: the message names the limit
        assert any(w in str(e) for w in ("must", "exceeds", "cannot", "needs")), e
        return
    prompt = rng.integers(0, m.vocab, size=case["prompt"])
    x = random_activations(rng, case["prompt"] + case["new"], m.d_model)
    p = case["prompt"]
    with Accelerator.open("sim", simulator=simulator, config=dev, timeout=600) as acc:
        acc.load_model(m)
        want = golden.layer(x, m.layers[0])
        assert np.array_equal(acc.layer(x[:p], 0), want[:p])
        for i in range(p, len(x)):
            assert np.array_equal(acc.decode(x[i], 0), want[i]), f"decode of token {i}"
        assert np.array_equal(acc.generate(prompt, case["new"]),
                              golden.generate(prompt, case["new"], m))
        rows = x[:min(3, len(x))]
        head = golden.linear(golden.multi_threshold(rows.astype(np.int64), m.th_out), m.Wout,
                             bits=m.head_bits, weights=m.head_weights)
        assert np.array_equal(acc.logits(rows), head)


@pytest.mark.slow
@MANY
@given(layer_cases())
def test_layer_devices_compute_exactly_many(case):
    check_layer_case(case)


@st.composite
def linear_cases(draw):
    lanes = draw(st.sampled_from([8, 16, 32]))
    core = CoreConfig(rows=draw(st.integers(1, 4)), cols=draw(st.integers(1, 5)), lanes=lanes,
                      max_k=draw(st.integers(1, 100)), max_t=draw(st.integers(1, 8)),
                      max_n=draw(st.integers(1, 24)), max_bits=draw(st.integers(1, 4)),
                      count_tables=draw(st.integers(0, lanes // 5)) if lanes >= 16 else 0)
    kw = core.max_chunks
    dev_args = dict(frame_bytes=(lanes // 8) * draw(st.integers(1, 8)),
                    act_words=kw * draw(st.integers(1, 12)),
                    weight_words=kw * draw(st.integers(1, 12)),
                    thresh_words=draw(st.integers(1, 24)), result_beats=draw(st.integers(1, 40)))
    t, n = draw(st.integers(1, 20)), draw(st.integers(1, 30))
    k = draw(st.integers(1, 2 * core.max_k + 5))
    precision = (draw(st.integers(1, 4)), draw(st.sampled_from(["binary", "ternary"])),
                 draw(st.sampled_from([1, 3, 7, 15])))
    return core, dev_args, t, n, k, draw(st.integers(0, 2 ** 16)), precision


def check_linear_case(case, simulator="icarus"):
    core, dev_args, t, n, k, seed, (abits, kind, levels) = case
    try:
        dev = DeviceConfig(core=core, **dev_args)
    except ValueError as e:
        assert "must" in str(e), e
        return
    rng = np.random.default_rng(seed)
    x, w = rng.integers(0, 2, (t, k)), rng.integers(0, 2, (n, k))
    thr = rng.integers(-k - 3, k + 4, n)
    ints, bits = expected_gemm(Op.XOR, x, w, thr)
    with Accelerator.open("sim", simulator=simulator, config=dev, timeout=600) as acc:
        try:
            got = acc.linear(x, w)
        except Exception as e:                   # noqa: BLE001 - a refusal must name a limit
            assert "cannot hold" in str(e), e
            return
        assert np.array_equal(got, ints)
        assert np.array_equal(acc.linear(x, w, thr), bits)
        # Every precision (1-4-bit levels, binary or ternary weights, multi-thresholds).
        q = rng.integers(0, 1 << abits, (t, k))
        wk = rng.integers(-1, 2, (n, k)) if kind == "ternary" else w
        span = ((1 << abits) - 1) * k
        mt = np.sort(rng.integers(-span - 2, span + 3, (n, levels)), axis=1)
        th = mt if seed % 2 else None            # integers or levels: one product a case
        want = golden.linear(q, wk, th, bits=abits, weights=kind)
        got = acc.linear(q, wk, th, bits=abits, weights=kind)
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.slow
@MANY
@given(linear_cases())
def test_linear_devices_compute_exactly_many(case):
    check_linear_case(case)
