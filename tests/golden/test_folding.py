"""Batch-norm folding and the NumPy binarisers used by ``onebit quantize`` and the exporter."""

import numpy as np
import pytest

from onebit.host.folding import (
    binarize_error_feedback,
    binarize_sign,
    binarize_stochastic,
    fold_batchnorm,
    quantize_scales,
)


def _bn_bits(x, g, b, m, v, eps):
    return (g * (x - m) / np.sqrt(v + eps) + b) >= 0


@pytest.mark.parametrize("negate", [True, False])
def test_fold_batchnorm_matches_the_float_comparison(negate):
    rng = np.random.default_rng(0)
    n, k = 64, 40
    g = rng.normal(size=n)
    g[:4] = 0.0                                     # constant channels
    b, m, v = rng.normal(size=n), rng.normal(scale=5, size=n), rng.uniform(0.5, 30, size=n)
    t, flip = fold_batchnorm(g, b, m, v, eps=1e-5, lo=-k, hi=k + 1, negate=negate)
    assert flip.sum() > 10 and not flip[:4].any()
    x = np.arange(-k, k + 1)[:, None]               # every value a dot over k elements takes
    want = _bn_bits(x, g, b, m, v, 1e-5)
    if negate:
        got = np.where(flip, -x >= t, x >= t)       # negated weight row
    else:
        got = np.where(flip, ~(x >= t), x >= t)     # inverted bit, reader's column flipped
    assert np.array_equal(got, want)
    assert (t >= -k).all() and (t <= k + 1).all()


def test_fold_batchnorm_rejects_bad_statistics():
    one = np.ones(3)
    with pytest.raises(ValueError, match=r"bn.var must be non-negative"):
        fold_batchnorm(one, one, one, -one, eps=1e-5, lo=-4, hi=5, negate=True)
    with pytest.raises(ValueError, match=r"bn.mean must have shape \(3,\) like bn.gamma"):
        fold_batchnorm(one, one, np.ones(4), one, eps=1e-5, lo=-4, hi=5, negate=True)
    with pytest.raises(ValueError, match="bn.beta holds a value that is not a finite number"):
        fold_batchnorm(one, np.array([1, np.nan, 1]), one, one, eps=1e-5, lo=-4, hi=5,
                       negate=True)


def test_binarizers():
    w = np.array([[0.5, -0.2, 0.0, -1e-9], [2.0, -3.0, 0.1, 0.7]])
    assert binarize_sign(w).tolist() == [[1, 0, 1, 0], [1, 0, 1, 1]]
    a = binarize_stochastic(w, seed=4)
    assert np.array_equal(a, binarize_stochastic(w, seed=4))          # seeded
    big = np.full((200, 500), 0.3)
    mean = (binarize_stochastic(big, seed=1) * 2.0 - 1).mean()
    assert mean == pytest.approx(0.3, abs=0.01)                       # unbiased
    with pytest.raises(ValueError, match=r"w\[0, 1\] = nan is not a finite number"):
        binarize_sign(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"must be a non-empty 2-D \(out, in\) matrix"):
        binarize_sign(np.zeros(3))


def test_error_feedback_tracks_running_sums():
    rng = np.random.default_rng(2)
    w = rng.normal(scale=0.3, size=(16, 300))
    bits = binarize_error_feedback(w)
    s = np.abs(w).mean(axis=1, keepdims=True)
    drift = np.cumsum(w - s * (bits * 2.0 - 1), axis=1)
    # sigma-delta: the error carried forward stays bounded, while plain signs drift away
    assert np.abs(drift).max() <= s.max() + np.abs(w).max() + 1e-12
    sign_drift = np.cumsum(w - s * (binarize_sign(w) * 2.0 - 1), axis=1)
    assert np.abs(drift).max() < np.abs(sign_drift).max() / 4


def test_quantize_scales_picks_the_largest_shift_that_fits():
    ints, r = quantize_scales({"so": np.array([0.5, -0.25, 0.9]), "s2": np.array([0.1])})
    assert r == 7 and ints["so"].tolist() == [64, -32, 115] and ints["s2"].tolist() == [13]
    ints, r = quantize_scales({"so": np.array([100.0])})
    assert r == 0 and ints["so"].tolist() == [100]
    with pytest.raises(ValueError, match="a scale of 300 does not fit signed 8 bits"):
        quantize_scales({"so": np.array([300.0])})
