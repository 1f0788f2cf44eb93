"""``onebit import`` against a reference that is not ours: Brevitas MLPs trained on
scikit-learn's 8x8 digits (W1A1, W1A2 and ternary-weight W2A2, batch norm between layers),
exported with ``export_qonnx``, imported, and run on the test split by QONNX's executor,
``golden.mlp`` and ``acc.mlp`` on Icarus: the outputs are identical integers on every image.
Graphs outside the scope are refused with a message that names the node (by its name after
QONNX's cleanup, which gives every node a unique name such as ``Gemm_0``)."""

import json

import numpy as np
import pytest

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from onebit.bench.qonnx_digits import NETWORKS, export, qonnx_outputs, three_way, to_integers, train  # noqa: E402, I001
from onebit.cli.main import main  # noqa: E402
from onebit.host import golden  # noqa: E402
from onebit.host.qonnx_import import ImportRefused, import_qonnx  # noqa: E402


@pytest.mark.parametrize("name", list(NETWORKS))
def test_golden_equals_qonnx_on_every_test_image(name, tmp_path):
    r = three_way(name, tmp_path, device=None)
    assert r["images"] == 450 and r["exact_products"]
    assert r["golden_equals_qonnx"], r
    assert r["accuracy"]["golden"] == r["accuracy"]["qonnx"] > 0.75
    in_bits, kind, bits = NETWORKS[name]
    assert [(x["bits"], x["weights"]) for x in r["layers"]] == \
        [(in_bits, kind), (bits, kind), (bits, kind)]


@pytest.mark.slow
def test_the_device_equals_qonnx_on_icarus(tmp_path):
    """A slice of the test split on the ternary, 2-bit network in the default run (every
    network on the whole split runs on Verilator with -m slow)."""
    r = three_way("W2A2", tmp_path, simulator="icarus", limit=16)
    assert r["golden_equals_qonnx"] and r["device_equals_golden"], r


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_device_equals_qonnx_on_the_whole_split(name, tmp_path):
    r = three_way(name, tmp_path, simulator="verilator")
    assert r["golden_equals_qonnx"] and r["device_equals_golden"], r


def test_import_and_run_from_the_command_line(tmp_path, capsys):
    from onebit.bench.qonnx_digits import _quiet

    with _quiet():
        net, xte, _ = train("W1A2", epochs=5)
    export(net, tmp_path / "m.onnx", xte)
    np.save(tmp_path / "x.npy", xte[:6])
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.npz"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "onebit-mlp" and len(summary["layers"]) == 3
    assert main(["run", str(tmp_path / "m.npz"), "--input", str(tmp_path / "x.npy"),
                 "--device", "golden", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    mlp, report = import_qonnx(tmp_path / "m.onnx")
    want = to_integers(qonnx_outputs(tmp_path / "m.onnx", xte[:6]), report["output"])
    assert out["outputs"] == want.tolist() == golden.mlp(xte[:6], mlp).tolist()
    assert out["classes"] == [int(np.argmax(r)) for r in want]
    # Bad input: one line (or one JSON object), exit status 2.
    assert main(["run", str(tmp_path / "m.npz"), "--input", str(tmp_path / "m.onnx"),
                 "--json"]) == 2
    assert "not a readable .npy" in json.loads(capsys.readouterr().out)["error"]
    np.save(tmp_path / "bad.npy", xte[:2, :60])
    assert main(["run", str(tmp_path / "m.npz"), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "60 features but the first layer takes 64" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz")]) == 2
    assert "not a readable ONNX graph" in capsys.readouterr().err


# ---------------------------------------------------------------------- refusals
def _graph(tmp_path, nodes, inits, in_shape=(1, 4), out_shape=(1, 3)):
    """A QONNX graph from onnx.helper parts, saved; returns its path."""
    from onnx import TensorProto, helper, numpy_helper, save

    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    path = tmp_path / "g.onnx"
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _quant(inp, out, name, bits, signed=1, narrow=0):
    from onnx import helper

    return helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out],
                            name=name, domain="qonnx.custom_op.general", signed=signed,
                            narrow=narrow, rounding_mode="ROUND")


def _qparams(name, bits, scale=0.5):
    return {f"{name}_s": scale, f"{name}_z": 0.0, f"{name}_b": float(bits)}


def _case(kind):
    """(nodes, initialisers, the words the refusal must contain) for each out-of-scope graph."""
    from onnx import helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4))
    binw = [helper.make_node("BipolarQuant", ["w", "ws"], ["wq"], name="wq",
                             domain="qonnx.custom_op.general")]
    base = {"w": w, "ws": 1.0, **_qparams("qi", 2)}
    gemm = helper.make_node("Gemm", ["a", "wq"], ["y"], name="fc", transB=1)
    qin = _quant("x", "a", "qi", 2)
    if kind == "conv":
        conv = helper.make_node("Conv", ["a", "k"], ["y"], name="conv1")
        return [qin, conv], {**_qparams("qi", 2), "k": np.ones((3, 1, 1))}, ["Conv node 'Conv_0'"]
    if kind == "five_bits":
        return [_quant("x", "a", "qi", 5), *binw, gemm], {**base, "qi_b": 5.0}, \
            ["Quant node 'Quant_0'", "5 bits", "1 (bipolar) to 4"]
    if kind == "three_bit_weights":
        wq = _quant("w", "wq", "qw", 3, narrow=1)
        return [qin, wq, gemm], {**base, **_qparams("qw", 3)}, \
            ["Quant node 'Quant_1'", "[3.0] bits", "binary", "ternary"]
    if kind == "float_layer":
        g1 = helper.make_node("Gemm", ["a", "wf"], ["y"], name="float_fc", transB=1)
        return [qin, g1], {**base, "wf": w}, ["Gemm node 'Gemm_0'", "float weights"]
    if kind == "unsigned_one_bit":
        return [_quant("x", "a", "qi", 1, signed=0), *binw, gemm], {**base, "qi_b": 1.0}, \
            ["Quant node 'Quant_0'", "1-bit", "bipolar"]
    if kind == "bias_per_output":
        gb = helper.make_node("Gemm", ["a", "wq", "bias"], ["y"], name="fc_bias", transB=1)
        return [qin, *binw, gb], {**base, "bias": [0.5, -1.0, 2.0]}, \
            ["Gemm node 'Gemm_0'", "bias per output"]
    if kind == "first_not_quantized":
        return [*binw, helper.make_node("Gemm", ["x", "wq"], ["y"], name="fc0", transB=1)], \
            {"w": w, "ws": 1.0}, ["Gemm node 'Gemm_0'", "quantize the network's input"]
    if kind == "softmax":
        g2 = helper.make_node("Gemm", ["a", "wq"], ["z"], name="fc", transB=1)
        sm = helper.make_node("Softmax", ["z"], ["y"], name="sm")
        return [qin, *binw, g2, sm], base, ["Softmax node 'Softmax_0'"]
    raise KeyError(kind)


@pytest.mark.parametrize("kind", ["conv", "five_bits", "three_bit_weights", "float_layer",
                                  "unsigned_one_bit", "bias_per_output", "first_not_quantized",
                                  "softmax"])
def test_out_of_scope_graphs_are_refused_by_name(tmp_path, kind):
    nodes, inits, words = _case(kind)
    with pytest.raises(ImportRefused) as e:
        import_qonnx(_graph(tmp_path, nodes, inits))
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_a_tiny_hand_made_graph_imports_exactly(tmp_path):
    """The positive twin of the refusals: 2-bit input, binary weights, output quantizer."""
    from onnx import helper

    rng = np.random.default_rng(3)
    nodes = [_quant("x", "a", "qi", 2),
             helper.make_node("BipolarQuant", ["w", "ws"], ["wq"], name="wq",
                              domain="qonnx.custom_op.general"),
             helper.make_node("Gemm", ["a", "wq"], ["g"], name="fc", transB=1),
             helper.make_node("Mul", ["g", "m"], ["h"], name="mul"),
             helper.make_node("Add", ["h", "c"], ["r"], name="add"),
             _quant("r", "y", "qo", 3)]
    inits = {"w": rng.normal(size=(3, 4)), "ws": 1.0, "m": [1.5, -0.75, 0.0],
             "c": [0.25, 1.0, -0.5], **_qparams("qi", 2), **_qparams("qo", 3, 0.25)}
    path = _graph(tmp_path, nodes, inits)
    mlp, report = import_qonnx(path)
    assert report["output"]["kind"] == "levels" and mlp.layers[0].out_bits == 3
    x = rng.uniform(-2, 2, (200, 4)).astype(np.float32)
    want = to_integers(qonnx_outputs(path, x), report["output"])
    np.testing.assert_array_equal(golden.mlp(x, mlp), want)
