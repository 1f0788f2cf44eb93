"""``MLPParams``: the file round-trips exactly at every precision, every validation names the
field, the input quantizer equals QONNX's ``Quant`` bit for bit, and ``golden.mlp`` is the stack
of ``golden.linear`` layers it says it is (against a plain-integer formulation)."""

import numpy as np
import pytest

from onebit.host import InputQuantizer, MLPLayer, MLPParams, ModelFileError, golden


def _model(rng, bits=(2, 3, 1), kinds=("binary", "ternary", "binary"), widths=(37, 33, 20, 7),
           last_thresholds=False):
    layers = []
    for i, (a, kind) in enumerate(zip(bits, kinds, strict=True)):
        k, n = widths[i], widths[i + 1]
        w = rng.integers(-1, 2, (n, k)) if kind == "ternary" else rng.integers(0, 2, (n, k))
        last = i == len(bits) - 1
        out = None if last and not last_thresholds else (bits[i + 1] if not last else 2)
        thr = None
        if out is not None:
            span = ((1 << a) - 1) * k
            thr = np.sort(rng.integers(-span - 1, span + 2, (n, (1 << out) - 1)), axis=1)
        off = rng.integers(-50, 50, n) if out is None else None
        layers.append(MLPLayer(w, bits=a, weights=kind, thresholds=thr, offset=off))
    quant = InputQuantizer("int", bits[0], np.float32(0.375), np.float32(1.0), True, False,
                           "ROUND") if bits[0] > 1 else InputQuantizer("bipolar")
    return MLPParams(tuple(layers), quant)


def _plain(q, m):
    """The MLP in plain integers: hat(q) = 2q - L, products, multi-thresholds by counting."""
    for layer in m.layers:
        a = 2 * q - ((1 << layer.bits) - 1)
        y = a @ np.asarray(layer.w, np.int64).T if layer.weights == "ternary" else \
            a @ (2 * np.asarray(layer.w, np.int64) - 1).T
        if layer.thresholds is None:
            return y + layer.offset
        q = (y[:, :, None] >= layer.thresholds[None]).sum(axis=2)
    return q


@pytest.mark.parametrize("last_thresholds", [False, True])
def test_file_round_trip_and_golden(tmp_path, last_thresholds):
    rng = np.random.default_rng(1)
    m = _model(rng, last_thresholds=last_thresholds)
    m.save(tmp_path / "m.npz")
    back = MLPParams.load(tmp_path / "m.npz")
    for a, b in zip(m.layers, back.layers, strict=True):
        assert (a.bits, a.weights) == (b.bits, b.weights)
        np.testing.assert_array_equal(a.w, b.w)
        for f in ("thresholds", "offset"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None) == (y is None) and (x is None or (x == y).all())
    x = rng.normal(0, 1.5, (25, 37)).astype(np.float32)
    np.testing.assert_array_equal(golden.mlp(x, back), golden.mlp(x, m))
    q = m.levels(x)
    np.testing.assert_array_equal(golden.mlp(q, m), _plain(q, m))


@pytest.mark.parametrize("mode", ["ROUND", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP",
                                  "HALF_DOWN"])
@pytest.mark.parametrize("bits,signed,narrow", [(2, True, False), (3, False, False),
                                                (4, True, True)])
def test_the_input_quantizer_is_qonnx_quant(mode, bits, signed, narrow):
    int_quant = pytest.importorskip("qonnx.custom_op.general.intquant").int_quant
    rng = np.random.default_rng(bits)
    scale = rng.uniform(0.1, 1, 5).astype(np.float32)
    zp = np.float32(1.0) if not signed else np.float32(0.0)
    x = rng.normal(0, 3, (400, 5)).astype(np.float32)
    x[:50] = (np.round(x[:50] / scale * 2) / 2 * scale).astype(np.float32)   # near ties
    q = InputQuantizer("int", bits, scale, zp, signed, narrow, mode)
    ref = int_quant(x, scale, zp, np.float32(bits), signed, narrow, mode) / scale + zp
    np.testing.assert_array_equal(q.levels(x), np.rint(ref).astype(np.int64) - q.span[0])


Z23, Z12, Z14 = (np.zeros(s, np.uint8) for s in ((2, 3), (1, 2), (1, 4)))


@pytest.mark.parametrize("make,message", [
    (lambda: MLPLayer(Z23, bits=5), "bits must be 1, 2, 3 or 4"),
    (lambda: MLPLayer(np.full((2, 3), 2)), "MLPLayer.w"),
    (lambda: MLPLayer(Z23, weights="quaternary"), "binary' or 'ternary"),
    (lambda: MLPLayer(Z23, thresholds=[[2, 1], [0, 0]]), "MLPLayer.thresholds"),
    (lambda: MLPLayer(Z23, thresholds=[[1, 2, 3], [3, 2, 1]]), "MLPLayer.thresholds"),
    (lambda: MLPLayer(Z23, thresholds=[1, 2], offset=[0, 0]), "offset belongs"),
    (lambda: MLPLayer(Z23, offset=[0.5, 1]), "offset must be 2 integers"),
    (lambda: MLPParams(()), "at least one layer"),
    (lambda: MLPParams((MLPLayer(Z23), MLPLayer(Z12))),
     "only the last layer"),
    (lambda: MLPParams((MLPLayer(Z23, thresholds=[0, 0]),
                        MLPLayer(Z14))), "takes K = 4 inputs"),
    (lambda: MLPParams((MLPLayer(Z23, thresholds=[0, 0]),
                        MLPLayer(Z12, bits=2))), "takes 2-bit inputs"),
    (lambda: MLPParams((MLPLayer(Z23, bits=2),), InputQuantizer("bipolar")),
     "gives 1-bit levels"),
    (lambda: InputQuantizer("int", 1), "must be bipolar"),
    (lambda: InputQuantizer("int", 2, scale=-1.0), "scale must be positive"),
    (lambda: InputQuantizer("int", 2, rounding="STOCHASTIC"), "rounding must be one of"),
    (lambda: InputQuantizer("int", 2, scale=np.nan), "finite"),
])
def test_validation_names_the_field(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_bad_inputs_and_files_are_named(tmp_path):
    m = MLPParams((MLPLayer(Z23, bits=2),),
                  InputQuantizer("int", 2, np.float32(0.5)))
    with pytest.raises(ValueError, match="inputs have 4 features but the first layer takes 3"):
        golden.mlp(np.zeros((1, 4), np.float32), m)
    with pytest.raises(ValueError, match=r"inputs\[0, 1\] = nan is not a finite number"):
        golden.mlp(np.array([[0, np.nan, 0]], np.float32), m)
    with pytest.raises(ValueError, match="is not a 2-bit level"):
        golden.mlp(np.array([[0, 4, 0]]), m)
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match="not a .npz archive"):
        MLPParams.load(tmp_path / "x.npy")
    from onebit.host import random_model

    random_model(np.random.default_rng(0), vocab=5, d_model=8, heads=2, d_ff=8,
                 n_layers=1).save(tmp_path / "lm.npz")
    with pytest.raises(ModelFileError, match="holds a 'onebit-model', not a 'onebit-mlp'"):
        MLPParams.load(tmp_path / "lm.npz")
