"""``onebit quantize``: float weights and batch-norm statistics to a binary layer or model file.

The folded file run by the golden model must equal the float network it came from, evaluated
with sign weights and its batch norms in floating point; bad inputs get named errors; ``--json``
serves programs that call the command as a process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from onebit.host import LayerParams, ModelParams, golden
from onebit.host.quantize import QuantizeError, quantize

D, H, F = 32, 2, 48
EPS = 1e-5


def _bn(rng, n, scale):
    g = rng.normal(size=n)
    return {"gamma": g, "beta": rng.normal(size=n) * 0.5, "mean": rng.normal(scale=scale, size=n),
            "var": rng.uniform(0.2, 2.0, size=n) * scale ** 2}


def _float_layer(rng):
    entries = {n: rng.normal(size=s) for n, s in
               (("Wq", (D, D)), ("Wk", (D, D)), ("Wv", (D, D)), ("Wo", (D, D)), ("W1", (F, D)),
                ("W2", (D, F)))}
    stats = {"th_attn": _bn(rng, D, 100), "tq": _bn(rng, D, 5), "tk": _bn(rng, D, 5),
             "tv": _bn(rng, D, 5), "tc": _bn(rng, D, 3), "th_ffn": _bn(rng, D, 100),
             "t1": _bn(rng, F, 5)}
    for site, st in stats.items():
        entries.update({f"{site}.{k}": v for k, v in st.items()})
    entries["ta"] = np.array([0.5, -1.2])
    entries["so"] = rng.integers(-100, 100, D) / 128      # exact in int8 with r = 7
    entries["s2"] = rng.integers(-100, 100, D) / 128
    entries["heads"] = np.int64(H)
    return entries


def _float_reference(e, x):
    """The float network: sign weights, float batch norms, exact scales."""
    def bits(site, v):
        return (e[f"{site}.gamma"] * (v - e[f"{site}.mean"]) / np.sqrt(e[f"{site}.var"] + EPS)
                + e[f"{site}.beta"]) >= 0

    def pm(b):
        return np.where(b, 1, -1)

    def sign(w):
        return pm(e[w] >= 0)

    t = x.shape[0]
    xb = pm(bits("th_attn", x))
    q, k, v = (pm(bits(s, xb @ sign(w).T)) for s, w in (("tq", "Wq"), ("tk", "Wk"), ("tv", "Wv")))
    dh = D // H
    c = np.zeros((t, D))
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[:, sl] @ k[:, sl].T
        a = (s >= np.ceil(e["ta"][h])) & np.tri(t, dtype=bool)
        c[:, sl] = a @ v[:, sl]
    cb = pm(bits("tc", c))
    x1 = np.clip(x + np.floor((cb @ sign("Wo").T) * e["so"]), -32768, 32767)
    hb = pm(bits("t1", pm(bits("th_ffn", x1)) @ sign("W1").T))
    return np.clip(x1 + np.floor((hb @ sign("W2").T) * e["s2"]), -32768, 32767)


def test_folded_layer_equals_the_float_network(tmp_path):
    rng = np.random.default_rng(0)
    e = _float_layer(rng)
    np.savez(tmp_path / "f.npz", **e)
    summary = quantize(tmp_path / "f.npz", tmp_path / "b.npz")
    assert summary["format"] == "onebit-layer" and summary["r"] == 7
    assert sum(summary["flipped"].values()) > 50           # negative gammas were folded
    p = LayerParams.load(tmp_path / "b.npz")
    x = rng.integers(-300, 300, size=(24, D)).astype(np.int16)
    assert np.array_equal(golden.layer(x, p), _float_reference(e, x.astype(np.float64)))


@pytest.mark.parametrize("method", ["sign", "stochastic", "error-feedback"])
def test_model_file_and_methods(tmp_path, method):
    rng = np.random.default_rng(1)
    e = {f"layer{i}.{k}": v for i in range(2) for k, v in _float_layer(rng).items()}
    e["E"] = rng.normal(scale=200, size=(11, D))
    e["Wout"] = rng.normal(size=(11, D))
    e.update({f"th_out.{k}": v for k, v in _bn(rng, D, 100).items()})
    np.savez(tmp_path / "f.npz", **e)
    s = quantize(tmp_path / "f.npz", tmp_path / "m.npz", method=method, seed=3)
    m = ModelParams.load(tmp_path / "m.npz")
    assert (s["format"], s["layers"], s["vocab"], len(m.layers)) == ("onebit-model", 2, 11, 2)
    assert np.array_equal(m.E, np.round(e["E"]).astype(np.int16))
    if method == "sign":
        flip_in = s["flipped"]["layer0.tq"] > 0
        assert flip_in
    golden.generate(np.array([1, 2, 3]), 4, m)                # a usable model


def _errors(tmp_path, entries, **kw):
    np.savez(tmp_path / "f.npz", **entries)
    with pytest.raises(QuantizeError) as info:
        quantize(tmp_path / "f.npz", tmp_path / "o.npz", **kw)
    return str(info.value)


def test_bad_inputs_are_named(tmp_path):
    rng = np.random.default_rng(2)
    good = _float_layer(rng)
    assert "entry 'Wv' is missing" in _errors(tmp_path, {k: v for k, v in good.items()
                                                         if k != "Wv"})
    assert "Wo must have shape (32, 32), not (32, 31)" in _errors(
        tmp_path, {**good, "Wo": np.zeros((32, 31))})
    bad = good["W1"].copy()
    bad[3, 4] = np.inf
    assert "W1[3, 4] = inf is not finite" in _errors(tmp_path, {**good, "W1": bad})
    assert "batch-norm statistics of tq are incomplete: tq.var missing" in _errors(
        tmp_path, {k: v for k, v in good.items() if k != "tq.var"})
    assert "tq is given both as thresholds and as batch-norm statistics" in _errors(
        tmp_path, {**good, "tq": np.zeros(D)})
    assert "heads must divide d_model = 32, not 5" in _errors(tmp_path, {**good,
                                                                         "heads": np.int64(5)})
    assert "unknown entries Wz" in _errors(tmp_path, {**good, "Wz": np.zeros(3)})
    assert "tk.var must be non-negative" in _errors(tmp_path, {**good, "tk.var": -np.ones(D)})
    assert "does not fit signed 8 bits" in _errors(tmp_path, {**good, "so": np.full(D, 500.0)})
    assert "method must be one of sign, stochastic, error-feedback, not 'round'" in _errors(
        tmp_path, good, method="round")
    ta = {k: v for k, v in good.items() if k != "ta"}
    ta.update({"ta.gamma": np.array([1.0, -1.0]), "ta.beta": np.zeros(2), "ta.mean": np.zeros(2),
               "ta.var": np.ones(2)})
    assert "ta has a negative gamma, which cannot be folded" in _errors(tmp_path, ta)
    model = {f"layer0.{k}": v for k, v in good.items()}
    model.update(E=np.full((4, D), 40000.0), Wout=np.ones((4, D)))
    assert "E holds 40000..40000, which does not fit int16" in _errors(tmp_path, model)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(QuantizeError, match="not a .npz archive"):
        quantize(tmp_path / "junk.npz", tmp_path / "o.npz")


def test_json_process_interface(tmp_path):
    """The way another runtime (a .NET Process, say) calls it: argv in, one JSON object out."""
    np.savez(tmp_path / "f.npz", **_float_layer(np.random.default_rng(4)))
    cmd = [sys.executable, "-m", "onebit.cli.main", "quantize", str(tmp_path / "f.npz"), "-o",
           str(tmp_path / "b.npz"), "--method", "error-feedback", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["format"] == "onebit-layer" and out["method"] == "error-feedback"
    assert len(out["sha256"]) == 64 and out["output"].endswith("b.npz")
    done = subprocess.run(cmd[:4] + [str(tmp_path / "missing.npz")] + cmd[5:], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"error": f"{tmp_path / 'missing.npz'}: no such file"}


def test_output_goes_to_exactly_the_path_given(tmp_path):
    np.savez(tmp_path / "f.npz", **_float_layer(np.random.default_rng(4)))
    out = tmp_path / "model2.bin"
    for existing in (False, True):               # a new file, then replacing an old one
        if existing:
            out.write_bytes(b"old contents")
        s = quantize(tmp_path / "f.npz", out)
        assert s["output"] == str(out) and not (tmp_path / "model2.bin.npz").exists()
        import hashlib
        assert s["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
        LayerParams.load(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "model2.bin"]


@pytest.mark.parametrize("change, message", [
    ({"eps": np.float64(-1.0)}, "eps must be one finite positive number, not -1.0"),
    ({"eps": np.float64(np.nan)}, "eps must be one finite positive number, not nan"),
    ({"eps": np.float64(0.0)}, "eps must be one finite positive number, not 0.0"),
    ({"eps": np.array([1e-5, 1e-5])}, "eps must be one finite positive number"),
    ({"eps": np.str_("small")}, "eps must hold real numbers, not dtype <U5"),
    ({"Wq": np.ones((D, D)) + 1j}, "Wq must hold real numbers, not dtype complex128"),
    ({"so": np.ones(D, complex)}, "so must hold real numbers, not dtype complex128"),
    ({"ta": np.ones(H, complex)}, "ta must hold real numbers, not dtype complex128"),
    ({"tq.gamma": np.ones(D, complex)}, "tq.gamma must be real numbers"),
    ({"W1": np.ones((0, D))}, r"W1 is empty \(shape \(0, 32\)\)"),
])
def test_bad_values_are_refused(tmp_path, change, message):
    entries = {**_float_layer(np.random.default_rng(5)), **change}
    assert message.replace("\\", "") in _errors(tmp_path, entries) or \
        __import__("re").search(message, _errors(tmp_path, entries))


def test_model_input_problems(tmp_path):
    rng = np.random.default_rng(6)
    model = {f"layer{i}.{k}": v for i in range(2) for k, v in _float_layer(rng).items()}
    model.update(E=rng.normal(size=(4, D)), Wout=rng.normal(size=(4, D)))
    narrow = {**model, "layer1.Wq": np.ones((16, 16)), "layer1.Wk": np.ones((16, 16))}
    assert "d_model must equal the embedding width 32" in _errors(tmp_path, {
        k: v for k, v in narrow.items()
        if not k.startswith("layer1.") or k in ("layer1.Wq", "layer1.Wk")} |
        {f"layer1.{k}": v for k, v in _float_layer_of(rng, 16).items()})
    assert "E is empty (shape (0, 32))" in _errors(tmp_path, {**model, "E": np.ones((0, D)),
                                                              "Wout": np.ones((0, D))})
    assert "seed must be a non-negative integer, not -1" in _errors(tmp_path, model, seed=-1)
    assert "heads must be a positive integer, not 0" in _errors(tmp_path, model, heads=0)


def _float_layer_of(rng, d):
    """A float layer of width ``d`` (heads 2), batch norms left out (thresholds default)."""
    f = 2 * d
    return {"Wq": rng.normal(size=(d, d)), "Wk": rng.normal(size=(d, d)),
            "Wv": rng.normal(size=(d, d)), "Wo": rng.normal(size=(d, d)),
            "W1": rng.normal(size=(f, d)), "W2": rng.normal(size=(d, f)), "heads": np.int64(2)}


def test_files_in_and_out(tmp_path):
    good = _float_layer(np.random.default_rng(7))
    np.savez(tmp_path / "f.npz", **good)
    with pytest.raises(QuantizeError, match="the output would overwrite the input"):
        quantize(tmp_path / "f.npz", tmp_path / "f.npz")
    with pytest.raises(QuantizeError, match="the output would overwrite the input"):
        quantize(tmp_path / "f.npz", tmp_path / "." / "f.npz")
    with pytest.raises(QuantizeError, match=r"its folder .*nope does not exist"):
        quantize(tmp_path / "f.npz", tmp_path / "nope" / "o.npz")
    with pytest.raises(QuantizeError, match="is a folder; give a file path"):
        quantize(tmp_path / "f.npz", tmp_path)
    np.save(tmp_path / "w.npy", np.zeros((3, 3)))
    with pytest.raises(QuantizeError, match=r"not a .npz archive \(a .npy file"):
        quantize(tmp_path / "w.npy", tmp_path / "o.npz")
    raw = bytearray((tmp_path / "f.npz").read_bytes())
    raw[200] ^= 0xFF                                   # inside the first entry's data
    (tmp_path / "z.npz").write_bytes(bytes(raw))
    with pytest.raises(QuantizeError, match=r"z.npz: entry '.*' is damaged|not a .npz archive"):
        quantize(tmp_path / "z.npz", tmp_path / "o.npz")
    assert not (tmp_path / "o.npz").exists()


def _ternary_float(rng, shape):
    """Float weights whose absmean is exactly 0.5 and whose absmean rounding is w / 0.5 clipped:
    half the entries +-1 and half 0 (each row), so ``w_t`` is ``sign(w)`` and the scale 0.5."""
    w = np.zeros(shape)
    for row in w:
        nz = rng.permutation(shape[1])[:shape[1] // 2]
        row[nz] = rng.choice([-1.0, 1.0], size=len(nz))
    return w


STEPS = {"th_attn": 2.0, "tq": 0.5, "tk": 1.0, "tv": 0.5, "tc": 2.0, "th_ffn": 4.0, "t1": 0.5}


def _hybrid_float_layer(rng, bits, kind):
    entries = _float_layer(rng)
    if kind == "ternary":
        for n, s in (("Wq", (D, D)), ("Wk", (D, D)), ("Wv", (D, D)), ("Wo", (D, D)),
                     ("W1", (F, D)), ("W2", (D, F))):
            entries[n] = _ternary_float(rng, s)
    entries.update({f"{site}.step": np.float64(s) for site, s in STEPS.items()})
    entries["ta"] = rng.normal(scale=3.0, size=H)
    entries["so"] = rng.integers(-60, 60, D) / 256      # exact with the steps, in int8
    entries["s2"] = rng.integers(-60, 60, D) / 64
    return entries


def _hybrid_reference(e, x, bits, kind):
    """The float network: batch norms in floating point, each followed by an A-bit uniform
    quantiser of its site's step (value ``step * (2q - L)``), weights sign or 0.5 * ternary."""
    lv = (1 << bits) - 1
    bounds = 2.0 * np.arange(1, lv + 1) - 1 - lv

    def quant(site, v):
        z = (e[f"{site}.gamma"] * (v - e[f"{site}.mean"]) / np.sqrt(e[f"{site}.var"] + EPS)
             + e[f"{site}.beta"])
        q = (z[..., None] >= STEPS[site] * bounds).sum(axis=-1)
        return STEPS[site] * (2 * q - lv)

    def weight(n):
        return np.where(e[n] >= 0, 1.0, -1.0) if kind == "binary" else 0.5 * e[n]

    t = x.shape[0]
    xa = quant("th_attn", x)
    q, k, v = (quant(s, xa @ weight(w).T) for s, w in (("tq", "Wq"), ("tk", "Wk"),
                                                       ("tv", "Wv")))
    dh = D // H
    c = np.zeros((t, D))
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[:, sl] @ k[:, sl].T
        a = (s >= np.ceil(e["ta"][h]) * STEPS["tq"] * STEPS["tk"]) & np.tri(t, dtype=bool)
        c[:, sl] = a @ v[:, sl]
    ca = quant("tc", c)
    x1 = np.clip(x + np.floor((ca @ weight("Wo").T) * e["so"]), -32768, 32767)
    ha = quant("t1", quant("th_ffn", x1) @ weight("W1").T)
    return np.clip(x1 + np.floor((ha @ weight("W2").T) * e["s2"]), -32768, 32767)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_hybrid_folded_layer_equals_the_float_network(tmp_path, bits, kind):
    """Multi-thresholds folded from batch norm and the quantisers' steps (FINN's rule for a
    negative gamma at every site), ternary weights by absmean with the scale folded into the
    thresholds and residual scales: the file, run by the golden model, equals the float net."""
    rng = np.random.default_rng(bits * 10 + len(kind))
    e = _hybrid_float_layer(rng, bits, kind)
    np.savez(tmp_path / "f.npz", **e)
    summary = quantize(tmp_path / "f.npz", tmp_path / "b.npz", bits=bits, weights=kind)
    assert (summary["bits"], summary["weights"]) == (bits, kind)
    assert sum(summary["flipped"].values()) > 50
    p = LayerParams.load(tmp_path / "b.npz")
    assert (p.bits, p.weights) == (bits, kind)
    x = rng.integers(-300, 300, size=(20, D)).astype(np.int16)
    assert np.array_equal(golden.layer(x, p), _hybrid_reference(e, x.astype(np.float64), bits,
                                                               kind))


def test_hybrid_model_and_bad_combinations(tmp_path):
    rng = np.random.default_rng(9)
    e = {f"layer0.{k}": v for k, v in _hybrid_float_layer(rng, 2, "ternary").items()}
    e["E"] = rng.normal(scale=200, size=(7, D))
    e["Wout"] = _ternary_float(rng, (7, D))
    e.update({f"th_out.{k}": v for k, v in _bn(rng, D, 100).items()})
    np.savez(tmp_path / "f.npz", **e)
    quantize(tmp_path / "f.npz", tmp_path / "m.npz", bits=2, weights="ternary")
    m = ModelParams.load(tmp_path / "m.npz")
    assert (m.head_bits, m.head_weights, m.layers[0].bits) == (2, "ternary", 2)
    golden.generate(np.array([1, 2, 3]), 3, m)
    for kw, message in (({"bits": 5}, "bits must be 1, 2, 3 or 4"),
                        ({"bits": 0}, "bits must be 1, 2, 3 or 4"),
                        ({"weights": "quaternary"}, "weights must be 'binary' or 'ternary'"),
                        ({"weights": "ternary", "method": "stochastic"},
                         "method 'stochastic' binarises weights; ternary weights use the "
                         "absmean rule")):
        with pytest.raises(QuantizeError, match=message):
            quantize(tmp_path / "f.npz", tmp_path / "o.npz", **kw)
    e["layer0.tq.step"] = np.float64(-1.0)
    np.savez(tmp_path / "g.npz", **e)
    with pytest.raises(QuantizeError, match="layer0.tq.step must be one finite positive"):
        quantize(tmp_path / "g.npz", tmp_path / "o.npz", bits=2)
    e["layer0.tq.step"] = np.float64(1.0)
    e["layer0.tz.step"] = np.float64(1.0)
    np.savez(tmp_path / "h.npz", **e)
    with pytest.raises(QuantizeError, match="unknown entries layer0.tz.step"):
        quantize(tmp_path / "h.npz", tmp_path / "o.npz", bits=2)
