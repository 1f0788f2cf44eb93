"""``acc.linear`` at every precision the numerics allow (1-4-bit activations, binary and ternary
weights, one or many threshold levels) equals ``golden.linear`` exactly, on the simulated
device, over the space of accepted inputs (hypothesis); bad precision arguments are refused."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit.host import Accelerator, DeviceConfig, golden
from onebit.host.core_config import CoreConfig

# Small, so that K beyond max_k, T beyond the activation store and N beyond the stores all tile.
SMALL = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=40, max_t=6, max_n=20),
                     frame_bytes=16, act_words=20, weight_words=48, thresh_words=10,
                     result_beats=24)


@pytest.fixture(scope="module")
def acc():
    with Accelerator.open("sim", simulator="amaranth", config=SMALL, timeout=120) as a:
        yield a


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


@pytest.mark.parametrize("bits,weights", [(2, "binary"), (4, "ternary"), (1, "ternary")])
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
