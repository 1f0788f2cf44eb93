"""Parameter validation names the field and the problem; files round-trip and fail clearly."""

import numpy as np
import pytest

from onebit.host import LayerParams, ModelFileError, ModelParams, golden, random_layer
from onebit.host import random_model as make_model


def entries(path):
    with np.load(path) as npz:
        return dict(npz)


def layer_dict(d=16, h=2, f=24, seed=0):
    return random_layer(np.random.default_rng(seed), d_model=d, heads=h, d_ff=f).to_dict()


def test_from_dict_round_trip():
    d = layer_dict()
    p = LayerParams.from_dict(d, heads=2)
    assert (p.d_model, p.heads, p.d_ff, p.head_dim) == (16, 2, 24, 8)
    assert all((np.asarray(p.to_dict()[k]) == np.asarray(v)).all() for k, v in d.items())


@pytest.mark.parametrize("key, value, exc, message", [
    ("Wq", np.zeros((16, 15), np.uint8), ValueError,
     r"Wq must have shape \(16, 16\), not \(16, 15\)"),
    ("W2", np.zeros((16, 23), np.uint8), ValueError,
     r"W2 must have shape \(16, 24\)"),
    ("Wk", np.full((16, 16), 2), ValueError,
     r"Wk must hold only 0 and 1, but LayerParams.Wk\[0, 0\] = 2"),
    ("Wv", np.zeros((16, 16)), TypeError,
     r"Wv must be an integer or boolean array"),
    ("tq", np.full(16, 18), ValueError,
     r"tq\[0\] = 18 is outside \[-16, 17\]"),
    ("ta", np.array([0, -9]), ValueError,
     r"ta\[1\] = -9 is outside \[-8, 9\]"),
    ("ta", np.zeros(3, int), ValueError,
     r"ta must have shape \(2,\), not \(3,\)"),
    ("t1", np.zeros(24, float), TypeError,
     r"t1 must be an integer array"),
    ("th_attn", np.full(16, 40000), ValueError,
     r"th_attn\[0\] = 40000 is outside \[-32768, 32768\]"),
    ("tc", np.full(16, 32768), ValueError,
     r"tc\[0\] = 32768 is outside \[-32768, 32767\]"),
    ("so", np.full(16, 128), ValueError,
     r"so\[0\] = 128 is outside \[-128, 127\] \(scales are signed 8-bit\)"),
    ("s2", np.full(16, -129), ValueError,
     r"s2\[0\] = -129"),
    ("r", 16, ValueError,
     r"r must be an integer shift in 0..15, not 16"),
    ("r", 1.5, ValueError,
     r"r must be an integer shift in 0..15, not 1.5"),
])
def test_validation_errors(key, value, exc, message):
    d = layer_dict()
    d[key] = value
    with pytest.raises(exc, match=message):
        LayerParams.from_dict(d, heads=2)


def test_structure_errors():
    with pytest.raises(ValueError, match="heads must divide d_model = 16, not 3"):
        LayerParams.from_dict(layer_dict(), heads=3)
    with pytest.raises(ValueError, match="heads must be a positive integer, not 0"):
        LayerParams.from_dict(layer_dict(), heads=0)
    d = layer_dict()
    del d["tk"]
    with pytest.raises(ValueError, match="missing tk"):
        LayerParams.from_dict(d, heads=2)
    d = layer_dict()
    d["bias"] = 0
    with pytest.raises(ValueError, match="unknown keys bias"):
        LayerParams.from_dict(d, heads=2)
    rng = np.random.default_rng(0)
    m = make_model(rng, vocab=5, d_model=16, heads=2, d_ff=8, n_layers=1)
    other = random_layer(rng, d_model=8, heads=2, d_ff=8)
    with pytest.raises(ValueError, match=r"layers\[1\].d_model must equal the embedding width 16"):
        ModelParams(E=m.E, layers=(m.layers[0], other), th_out=m.th_out, Wout=m.Wout)
    with pytest.raises(ValueError, match=r"E\[0, 0\] = 40000 is outside"):
        ModelParams(E=np.full((5, 16), 40000), layers=(), th_out=m.th_out, Wout=m.Wout)


def test_layer_file_round_trip(tmp_path):
    p = LayerParams.from_dict(layer_dict(d=40, h=4, f=33), heads=4)
    p.save(tmp_path / "l.npz")
    q = LayerParams.load(tmp_path / "l.npz")
    x = np.random.default_rng(1).integers(-100, 100, (5, 40)).astype(np.int16)
    assert (golden.layer(x, p) == golden.layer(x, q)).all()
    assert all((np.asarray(a) == np.asarray(b)).all()
               for a, b in zip(p.to_dict().values(), q.to_dict().values(), strict=True))


def test_model_file_round_trip(tmp_path):
    m = make_model(np.random.default_rng(2), vocab=11, d_model=24, heads=2, d_ff=40,
                   n_layers=2)
    m.save(tmp_path / "m.npz")
    m2 = ModelParams.load(tmp_path / "m.npz")
    prompt = np.array([1, 2, 3])
    assert (golden.generate(prompt, 4, m) == golden.generate(prompt, 4, m2)).all()


def test_damaged_and_mismatched_files(tmp_path):
    p = LayerParams.from_dict(layer_dict(), heads=2)
    p.save(tmp_path / "l.npz")
    raw = (tmp_path / "l.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="not a readable .npz file"):
        LayerParams.load(tmp_path / "cut.npz")
    with pytest.raises(ModelFileError, match="holds a 'onebit-layer', not a 'onebit-model'"):
        ModelParams.load(tmp_path / "l.npz")
    data = entries(tmp_path / "l.npz")
    del data["tq"]
    np.savez(tmp_path / "missing.npz", **data)
    with pytest.raises(ModelFileError, match="entry 'tq' is missing"):
        LayerParams.load(tmp_path / "missing.npz")
    data = entries(tmp_path / "l.npz")
    data["Wq"] = data["Wq"] | np.uint32(1 << 31)     # set a padding bit of a 16-bit row
    np.savez(tmp_path / "pad.npz", **data)
    with pytest.raises(ModelFileError, match="entry 'Wq' is damaged"):
        LayerParams.load(tmp_path / "pad.npz")
    data = entries(tmp_path / "l.npz")
    data["so"] = np.full(16, 500)
    np.savez(tmp_path / "range.npz", **data)
    with pytest.raises(ModelFileError, match=r"so\[0\] = 500 is outside"):
        LayerParams.load(tmp_path / "range.npz")
    data = entries(tmp_path / "l.npz")
    data["version"] = np.int64(99)
    np.savez(tmp_path / "v.npz", **data)
    with pytest.raises(ModelFileError, match="format version 99 is not supported"):
        LayerParams.load(tmp_path / "v.npz")


def test_model_validation_errors():
    rng = np.random.default_rng(3)
    m = make_model(rng, vocab=5, d_model=16, heads=2, d_ff=8, n_layers=1)
    with pytest.raises(ValueError, match=r"th_out\[0\] = 40000 is outside \[-32768, 32768\]"):
        ModelParams(E=m.E, layers=m.layers, th_out=np.full(16, 40000), Wout=m.Wout)
    with pytest.raises(ValueError, match=r"Wout must have shape \(5, 16\), not \(5, 15\)"):
        ModelParams(E=m.E, layers=m.layers, th_out=m.th_out, Wout=m.Wout[:, :15])
    with pytest.raises(TypeError, match=r"layers\[0\] must be LayerParams, not dict"):
        ModelParams(E=m.E, layers=({},), th_out=m.th_out, Wout=m.Wout)
    with pytest.raises(ValueError, match=r"E must be a non-empty 2-D \(V, D\) array"):
        ModelParams(E=np.zeros((0, 16)), layers=(), th_out=m.th_out, Wout=m.Wout)
    with pytest.raises(TypeError, match="LayerParams.from_dict needs a dict, not list"):
        LayerParams.from_dict([], heads=2)
    d = layer_dict()
    d["Wq"] = np.zeros(16, np.uint8)
    with pytest.raises(ValueError, match=r"Wq and W1 must be 2-D \(out, in\)"):
        LayerParams.from_dict(d, heads=2)
    with pytest.raises(KeyError, match="'tq' is not a weight"):
        LayerParams.from_dict(layer_dict(), heads=2).packed("tq")
