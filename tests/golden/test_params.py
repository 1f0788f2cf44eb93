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
    ("tq", np.array([2 ** 64] * 16, dtype=object), ValueError,
     r"tq holds 18446744073709551616, which does not fit int64"),
    ("ta", np.array([0, 2 ** 63], dtype=np.uint64), ValueError,
     r"ta holds 9223372036854775808, which does not fit int64"),
    ("ta", np.zeros(3, int), ValueError,
     r"ta must have shape \(2,\), not \(3,\)"),
    ("t1", np.zeros(24, float), TypeError,
     r"t1 must be integers, not dtype float64"),
    ("th_ffn", np.full(16, True), TypeError,
     r"th_ffn must be integers, not dtype bool"),
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
    with pytest.raises(ModelFileError, match="not a .npz archive"):
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


def test_thresholds_beyond_their_range_are_clamped_exactly():
    """Any integer threshold is valid; beyond the compared value's range it is clamped to the
    nearer end, which gives the same bits (always 1 or always 0)."""
    rng = np.random.default_rng(4)
    d = layer_dict()
    wide = {"tq": (-16, 17), "ta": (-8, 9), "th_attn": (-32768, 32768), "tc": (-32768, 32767),
            "t1": (-16, 17), "th_ffn": (-32768, 32768)}
    for key, (lo, hi) in wide.items():
        d[key] = rng.choice([-(1 << 62), lo - 1, lo, 0, hi, hi + 1, 1 << 40], size=len(d[key]))
    p = LayerParams.from_dict(d, heads=2)
    for key, (lo, hi) in wide.items():
        assert np.array_equal(p.to_dict()[key], np.clip(d[key], lo, hi)), key
    x = rng.integers(-400, 400, size=(5, 16)).astype(np.int16)
    exact = _plain_layer(x, d)
    assert np.array_equal(golden.layer(x, p), exact)


def _plain_layer(x, d):
    """The spec's layer in plain integers, on the unclamped thresholds."""
    def dot(a, w):
        return (2 * a.astype(np.int64) - 1) @ (2 * w.astype(np.int64) - 1).T
    xb = (x >= d["th_attn"]).astype(np.int64)
    q, k, v = ((dot(xb, d[w]) >= d[t]).astype(np.int64)
               for w, t in (("Wq", "tq"), ("Wk", "tk"), ("Wv", "tv")))
    t, dm = x.shape
    h = len(d["ta"])
    dh = dm // h
    c = np.zeros((t, dm), np.int64)
    for hh in range(h):
        sl = slice(hh * dh, (hh + 1) * dh)
        s = (2 * q[:, sl] - 1) @ (2 * k[:, sl] - 1).T
        mask = (s >= d["ta"][hh]) & np.tri(t, dtype=bool)
        c[:, sl] = mask.astype(np.int64) @ (2 * v[:, sl] - 1)
    cb = (c >= d["tc"]).astype(np.int64)
    o = dot(cb, d["Wo"])
    x1 = np.clip(x + ((o * d["so"]) >> d["r"]), -32768, 32767)
    hb = (dot((x1 >= d["th_ffn"]).astype(np.int64), d["W1"]) >= d["t1"]).astype(np.int64)
    y = dot(hb, d["W2"])
    return np.clip(x1 + ((y * d["s2"]) >> d["r"]), -32768, 32767).astype(np.int16)


def test_model_validation_errors():
    rng = np.random.default_rng(3)
    m = make_model(rng, vocab=5, d_model=16, heads=2, d_ff=8, n_layers=1)
    assert ModelParams(E=m.E, layers=m.layers, th_out=np.full(16, 40000),
                       Wout=m.Wout).th_out.max() == 32768
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


def _model_file(tmp_path, **change):
    """The entries of a saved two-layer model with ``change`` applied (None deletes)."""
    m = make_model(np.random.default_rng(6), vocab=5, d_model=16, heads=2, d_ff=8, n_layers=2)
    m.save(tmp_path / "m.npz")
    data = entries(tmp_path / "m.npz")
    for k, v in change.items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    np.savez(tmp_path / "bad.npz", **data)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("change, message", [
    ({"n_layers": np.int64(1)}, r"'n_layers' = 1 does not match the layers stored \(0, 1\)"),
    ({"n_layers": np.int64(0)}, r"'n_layers' = 0 does not match"),
    ({"n_layers": np.int64(-1)}, r"'n_layers' = -1 does not match"),
    ({"n_layers": np.int64(3)}, r"'n_layers' = 3 does not match"),
    ({"n_layers": np.float64(2.0)}, r"entry 'n_layers' must be one integer, not a float64"),
    ({"layer0.heads": np.float64(2.9)}, r"entry 'layer0.heads' must be one integer"),
    ({"layer1.r": np.float64(2.9)}, r"entry 'layer1.r' must be one integer"),
    ({"layer0.r": np.array([2, 3])}, r"entry 'layer0.r' must be one integer, not a int64 array "
                                     r"of shape \(2,\)"),
    ({"version": np.array([1])}, r"entry 'version' must be one integer"),
    ({"version": np.float64(1.0)}, r"entry 'version' must be one integer"),
    ({"format": np.int64(3)}, r"entry 'format' must be one string"),
    ({"charset": np.int64(3)}, r"entry 'charset' must be one string"),
    ({"logit_scale": np.str_("big")}, r"entry 'logit_scale' must be one floating-point"),
    ({"Wout.bits": np.str_("16")}, r"entry 'Wout.bits' must be one integer"),
    ({"extra": np.int64(1)}, r"unknown entries extra"),
    ({"layer0.tq.old": np.zeros(3)}, r"unknown entries layer0.tq.old"),
    ({"layer1.Wq": None}, r"entry 'layer1.Wq' is missing"),
])
def test_damaged_model_entries_are_named(tmp_path, change, message):
    with pytest.raises(ModelFileError, match=message):
        ModelParams.load(_model_file(tmp_path, **change))


def test_files_that_are_not_model_archives(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match=r"a.npy: not a .npz archive \(a .npy file"):
        ModelParams.load(tmp_path / "a.npy")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ModelFileError, match="is a folder, not a .npz file"):
        ModelParams.load(tmp_path / "dir.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ModelParams.load(tmp_path / "none.npz")
    # An entry whose .npy header claims a huge array: refused before anything is allocated.
    _rewrite_entry(tmp_path, "huge.npz", "E.npy", lambda raw: _npy_claiming(np.int16, (1 << 40,)))
    with pytest.raises(ModelFileError, match=r"entry 'E' claims a \(1099511627776,\) int16 "
                                             r"array \(2199023255552 bytes\) but holds at most"):
        ModelParams.load(tmp_path / "huge.npz")


def test_a_header_that_does_not_parse(tmp_path):
    _rewrite_entry(tmp_path, "bad.npz", "th_out.npy",        # the header's text breaks
                   lambda raw: raw.replace(b"'descr'", b"'descr\"", 1))
    with pytest.raises(ModelFileError, match=r"bad.npz: entry 'th_out' is damaged"):
        ModelParams.load(tmp_path / "bad.npz")


def _rewrite_entry(tmp_path, name: str, entry: str, change) -> None:
    """Save a small model, then write it again as ``name`` with ``entry``'s bytes changed."""
    import zipfile
    m = make_model(np.random.default_rng(6), vocab=5, d_model=16, heads=2, d_ff=8, n_layers=1)
    m.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as src, \
            zipfile.ZipFile(tmp_path / name, "w") as dst:
        for info in src.infolist():
            raw = src.read(info)
            dst.writestr(info.filename, change(raw) if info.filename == entry else raw)


def _npy_claiming(dtype, shape) -> bytes:
    """A .npy file whose header claims ``shape`` but which holds 16 bytes of data."""
    import io
    fh = io.BytesIO()
    np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str,
                                              "fortran_order": False, "shape": shape})
    return fh.getvalue() + bytes(16)


def test_a_thousand_byte_flips_of_the_shipped_model(tmp_path):
    """Every flipped byte of the shipped model file either raises ModelFileError or loads a
    model equal to the original (a flip in a part of the archive that holds no data)."""
    import random
    from importlib import resources

    raw = (resources.files("onebit.host") / "default_model.npz").read_bytes()
    original = ModelParams.load(resources.files("onebit.host") / "default_model.npz")
    rng = random.Random(7)
    path = tmp_path / "flip.npz"
    outcomes = {"refused": 0, "equal": 0}
    for _ in range(1000):
        data = bytearray(raw)
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(data))
        try:
            m = ModelParams.load(path)
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        assert _same_model(m, original)
        outcomes["equal"] += 1
    assert outcomes["refused"] > 900, outcomes


def _same_model(a, b) -> bool:
    if (a.charset, a.logit_scale, len(a.layers)) != (b.charset, b.logit_scale, len(b.layers)):
        return False
    if not all(np.array_equal(getattr(a, n), getattr(b, n)) for n in ("E", "th_out", "Wout")):
        return False
    return all(np.array_equal(np.asarray(x.to_dict()[k]), np.asarray(y.to_dict()[k]))
               for x, y in zip(a.layers, b.layers, strict=True) for k in x.to_dict())
