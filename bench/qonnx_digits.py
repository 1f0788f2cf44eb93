"""``onebit bench import``: Brevitas MLPs on scikit-learn's 8x8 digits, run three ways.

Three networks (``NETWORKS``) with batch norm between layers are trained with Brevitas for a few
epochs on ``sklearn.datasets.load_digits`` (real data, bundled with scikit-learn: no download),
exported with ``export_qonnx``, imported with ``onebit import`` (``import_qonnx``) and run on the
test split by QONNX's executor (``execute_onnx`` on the cleaned-up graph), by ``golden.mlp`` and
by ``acc.mlp`` on a simulated device. The outputs are compared integer for integer: QONNX's
float logits are ``scale * o + bias`` of the importer's integers ``o``. Needs the ``dev`` extra
(Brevitas, scikit-learn) and the ``import`` extra (QONNX).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .. import json_output

#: name: (input bits, weight kind, hidden activation bits)
NETWORKS = {"W1A1": (1, "binary", 1), "W1A2": (2, "binary", 2), "W2A2": (2, "ternary", 2)}


@contextlib.contextmanager
def _quiet():
    """Brevitas and torch.onnx warn on import and export (deprecations, optional kernels) and
    print progress; none of it concerns the results."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def digits(seed: int = 0):
    """The 8x8 digits as floats in [-1, 1]: train and test splits (75% / 25%)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 8.0 - 1.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) * 3 // 4
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def build(name: str, hidden: int = 64):
    """The Brevitas network ``name`` (power-of-two scales: QONNX's float32 is then exact)."""
    import brevitas.nn as qnn
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
        Uint8ActPerTensorFixedPoint,
    )
    from torch import nn

    in_bits, kind, bits = NETWORKS[name]

    def act(first: bool, relu: bool):
        if (in_bits if first else bits) == 1:
            return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                     return_quant_tensor=True)
        if relu:
            return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits,
                                 return_quant_tensor=True)
        return qnn.QuantHardTanh(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits,
                                 max_val=1.0, min_val=-1.0, return_quant_tensor=True)

    def linear(k: int, n: int):
        if kind == "binary":
            return qnn.QuantLinear(k, n, bias=False, weight_quant=SignedBinaryWeightPerTensorConst,
                                   weight_scaling_const=1.0)
        return qnn.QuantLinear(k, n, bias=False, weight_quant=Int8WeightPerTensorFixedPoint,
                               weight_bit_width=2, weight_narrow_range=True)

    first = (qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=in_bits,
                               return_quant_tensor=True) if in_bits > 1 else act(True, False))
    return nn.Sequential(
        first,
        linear(64, hidden), nn.BatchNorm1d(hidden), act(False, True),
        linear(hidden, hidden), nn.BatchNorm1d(hidden), act(False, False),
        linear(hidden, 10))


def train(name: str, epochs: int = 60, seed: int = 0):
    """Train ``name`` (full-batch Adam); return the net in eval mode and the test split."""
    import torch

    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits(seed)
    net = build(name)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    x, y = torch.tensor(xtr), torch.tensor(ytr)
    for _ in range(epochs):
        opt.zero_grad()
        out = net(x)
        torch.nn.functional.cross_entropy(getattr(out, "value", out), y).backward()
        opt.step()
    net.eval()
    return net, xte, yte


def export(net, path: Path, example: np.ndarray) -> None:
    """``export_qonnx`` quietly."""
    import torch

    with _quiet():
        from brevitas.export import export_qonnx

        export_qonnx(net, torch.tensor(example[:1]), str(path))


def qonnx_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """QONNX's own execution of the cleaned-up graph on ``x`` (one row at a time)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(path)))
    name, out = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute_onnx(model, {name: x[i:i + 1]})[out] for i in range(len(x))])


def to_integers(y: np.ndarray, output: dict) -> np.ndarray:
    """QONNX's float outputs as the importer's integers (or levels); refuse if they are not."""
    if output["kind"] == "levels":
        if output["bipolar"]:
            return (y >= 0).astype(np.int64)
        v = y.astype(np.float64) / output["scale"] + output["zeropt"]
        o = np.rint(v) - output["min"]
    else:
        v = (y.astype(np.float64) - output["bias"]) / output["scale"]
        o = np.rint(v)
    if np.abs(v - np.rint(v)).max(initial=0) > 1e-3:
        raise AssertionError("QONNX's outputs are not an affine image of integers")
    return o.astype(np.int64)


def three_way(name: str, workdir: Path, *, device: str | None = "sim", simulator: str =
              "amaranth", epochs: int = 60, limit: int | None = None) -> dict:
    """Train, export, import and run ``name`` three ways; return the figures."""
    from ..host import Accelerator, golden
    from ..host.qonnx_import import import_qonnx

    with _quiet():
        net, xte, yte = train(name, epochs)
    if limit:
        xte, yte = xte[:limit], yte[:limit]
    onnx_path = workdir / f"{name}.onnx"
    export(net, onnx_path, xte)
    mlp, report = import_qonnx(onnx_path)
    ref = to_integers(qonnx_outputs(onnx_path, xte), report["output"])
    gold = golden.mlp(xte, mlp)
    r = {"network": name, "images": len(xte), "exact_products": report["exact_products"],
         "layers": report["layers"],
         "accuracy": {"qonnx": float((ref.argmax(1) == yte).mean()),
                      "golden": float((gold.argmax(1) == yte).mean())},
         "golden_equals_qonnx": bool((gold == ref).all())}
    if device:
        start = time.perf_counter()
        with Accelerator.open(device, simulator=simulator, timeout=600) as acc:
            dev = acc.mlp(xte, mlp)
        r["device_seconds"] = time.perf_counter() - start
        r["accuracy"]["device"] = float((dev.argmax(1) == yte).mean())
        r["device_equals_golden"] = bool((dev == gold).all())
    return r


def run(*, json_out: bool = False, simulator: str = "icarus") -> int:
    """Print the three-way table; return 0 if every run agrees exactly, else 1."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in NETWORKS:
            rows.append(three_way(name, Path(tmp), simulator=simulator))
    ok = all(r["golden_equals_qonnx"] and r["device_equals_golden"] for r in rows)
    if json_out:
        print(json_output.dumps({"networks": rows, "identical": ok}))
        return 0 if ok else 1
    print(f"Brevitas MLPs on the 8x8 digits test split, QONNX vs golden.mlp vs acc.mlp "
          f"({simulator}):")
    print("| network | images | QONNX | golden | device | outputs identical |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        a = r["accuracy"]
        same = r["golden_equals_qonnx"] and r["device_equals_golden"]
        print(f"| {r['network']} | {r['images']} | {a['qonnx']:.2%} | {a['golden']:.2%} | "
              f"{a['device']:.2%} | {'yes' if same else 'NO'} |")
    return 0 if ok else 1
