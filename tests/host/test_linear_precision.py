"""``acc.linear`` at every precision the numerics allow (1-4-bit activations, binary and ternary
weights, one or many threshold levels) equals ``golden.linear`` exactly, on the simulated
device, over the space of accepted inputs (hypothesis); bad precision arguments are refused.
Two devices: a one-bit core (the host sends one plane per pass) and a core that takes 4-bit
activations as bit-planes and sums them itself (``CoreConfig.max_bits``)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit.host import Accelerator, DeviceConfig, golden
from onebit.host.core_config import CoreConfig
from onebit.host.link import DeviceError
from onebit.host.product_plan import plan_product
from onebit.host.protocol import Opcode, run_flags

# Small, so that K beyond max_k, T beyond the activation store and N beyond the stores all tile.
SMALL = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=40, max_t=6, max_n=20),
                     frame_bytes=16, act_words=20, weight_words=48, thresh_words=10,
                     result_beats=24)


# The same stores with a core of 4-bit activations (K up to 16 a product at A = 3, 4).
PLANES = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=64, max_t=6, max_n=20,
                                      max_bits=4),
                      frame_bytes=16, act_words=20, weight_words=48, thresh_words=10,
                      result_beats=24)


@pytest.fixture(scope="module", params=[SMALL, PLANES], ids=["one-bit core", "planes core"])
def acc(request):
    with Accelerator.open("sim", simulator="amaranth", config=request.param, timeout=120) as a:
        yield a


@pytest.fixture(scope="module")
def planes_acc():
    with Accelerator.open("sim", simulator="amaranth", config=PLANES, timeout=120) as a:
        yield a


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_planes_core_runs_one_product(planes_acc, monkeypatch, bits):
    # A-bit activations with binary weights within max_k_at(A): one product (a RUN per token
    # block, per threshold level with thresholds), the planes summed on the device; a one-bit
    # core would need A of them.
    rng = np.random.default_rng(bits)
    k = PLANES.core.max_k_at(bits)
    x, w = rng.integers(0, 1 << bits, (5, k)), rng.integers(0, 2, (4, k))
    thr = np.sort(rng.integers(-40, 40, (4, 3)), axis=1)
    sent = []
    request = planes_acc._request
    monkeypatch.setattr(planes_acc, "_request",
                        lambda opcode, *a, **kw: sent.append(opcode) or request(opcode, *a, **kw))
    for t, levels in ((None, 0), (thr, 3)):
        sent.clear()
        got = planes_acc.linear(x, w, t, bits=bits)
        np.testing.assert_array_equal(got, golden.linear(x, w, t, bits=bits))
        plan = plan_product(PLANES, 5, 4, k, levels, bits)
        runs = -(-5 // plan.t_block) * -(-4 // plan.n_block) * max(levels, 1)
        assert sent.count(Opcode.RUN) == runs


@st.composite
def problems(draw):
    bits = draw(st.integers(1, 4))
    weights = draw(st.sampled_from(["binary", "ternary"]))
    t, n, k = draw(st.integers(1, 7)), draw(st.integers(1, 22)), draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, (t, k))
    w = rng.integers(-1, 2, (n, k)) if weights == "ternary" else rng.integers(0, 2, (n, k))
    levels = draw(st.sampled_from([None, 1, 3, 7, 15]))
    thr = None
    if levels is not None:
        span = ((1 << bits) - 1) * k
        thr = np.sort(rng.integers(-span - 2, span + 3, (n, levels)), axis=1)
        if levels == 1 and draw(st.booleans()):
            thr = thr[:, 0]
    return x, w, thr, bits, weights


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problems())
def test_every_precision_matches_golden(acc, problem):
    x, w, thr, bits, weights = problem
    got = acc.linear(x, w, thr, bits=bits, weights=weights)
    want = golden.linear(x, w, thr, bits=bits, weights=weights)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bits,weights", [
    (2, "binary"), pytest.param(4, "ternary", marks=pytest.mark.slow), (1, "ternary")])
def test_a_reference_shape_matches_golden(acc, bits, weights):
    """One fixed problem per precision that tiles in every dimension."""
    rng = np.random.default_rng(bits * 10 + len(weights))
    x = rng.integers(0, 1 << bits, (7, 50))
    w = rng.integers(-1, 2, (22, 50)) if weights == "ternary" else rng.integers(0, 2, (22, 50))
    thr = np.sort(rng.integers(-200, 200, (22, 3)), axis=1)
    for t in (None, thr):
        np.testing.assert_array_equal(acc.linear(x, w, t, bits=bits, weights=weights),
                                      golden.linear(x, w, t, bits=bits, weights=weights))


@pytest.mark.parametrize("kwargs,error,message", [
    ({"bits": 5}, ValueError, "bits must be"),
    ({"bits": True}, ValueError, "bits must be"),
    ({"weights": "quaternary"}, ValueError, "weights must be"),
    ({"bits": 2, "x": np.full((2, 4), 4)}, ValueError, r"is not a 2-bit level \(0..3\)"),
    ({"weights": "ternary", "w": np.full((3, 4), 2)}, ValueError, "is not a ternary weight"),
    ({"bits": 2, "thresholds": np.zeros((3, 2))}, ValueError, "thresholds must have shape"),
    ({"bits": 2, "thresholds": np.array([[0, 2, 1]] * 3)}, ValueError, "thresholds"),
])
def test_bad_precision_arguments_are_refused(acc, kwargs, error, message):
    args = {"x": np.zeros((2, 4), int), "w": np.zeros((3, 4), int), "thresholds": None}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        acc.linear(args.pop("x"), args.pop("w"), args.pop("thresholds"), **args)


@pytest.mark.parametrize("fields", [dict(op=1, flags=run_flags(threshold=False, bits=2)),
                                    dict(k=17, flags=run_flags(threshold=False, bits=4)),
                                    dict(k=33, flags=run_flags(threshold=False, bits=2)),
                                    dict(k=17, flags=run_flags(threshold=True, bits=3)),
                                    dict(flags=0x08)])
def test_planes_run_out_of_range_is_refused(planes_acc, fields):
    # The device refuses a RUN its core cannot take: AND products of planes, a row of planes
    # beyond max_chunks, an unknown flag; nothing runs.
    args = dict(op=0, flags=0, t=1, n=1, k=9, act_base=0, weight_base=0, thresh_base=0)
    args.update(fields)
    with pytest.raises(DeviceError, match="RUN with OUT_OF_RANGE"):
        planes_acc._request(Opcode.RUN, **args)
    x = np.arange(16).reshape(2, 8) % 16
    w = np.ones((1, 8), int)
    np.testing.assert_array_equal(planes_acc.linear(x, w, bits=4), golden.linear(x, w, bits=4))
