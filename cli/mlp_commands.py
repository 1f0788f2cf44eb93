"""``onebit import`` (a QONNX graph to an MLP model file) and ``onebit run`` (an MLP on raw
float inputs, on the simulated device or a board). With ``--json`` each prints one JSON object
on standard output: the summary or ``{"error": ...}``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["import_main", "run_main"]


def _fail(command: str, message: str, json_out: bool) -> int:
    if json_out:
        print(json.dumps({"error": f"onebit {command}: {message}"}))
    else:
        print(f"onebit {command}: {message}", file=sys.stderr)
    return 2


def import_main(src: str, dst: str, *, json_out: bool) -> int:
    """``onebit import MODEL.onnx -o model.npz``."""
    from ..host.qonnx_import import ImportRefused, import_qonnx

    if Path(dst).resolve() == Path(src).resolve():
        return _fail("import", f"the output {dst} would overwrite the input", json_out)
    try:
        mlp, report = import_qonnx(src)
        mlp.save(dst)
    except (ImportRefused, ImportError, OSError) as e:
        return _fail("import", str(e), json_out)
    summary = {"output": dst, "format": "onebit-mlp", "layers": report["layers"],
               "input": report["input"], "outputs": report["output"]["kind"],
               "exact_products": report["exact_products"]}
    if json_out:
        print(json.dumps(summary))
        return 0
    print(f"wrote {dst}: an MLP of {len(report['layers'])} layers, input "
          f"{report['input']['kind']} {report['input']['bits']}-bit")
    for i, layer in enumerate(report["layers"]):
        out = (f"{layer['out_bits']}-bit levels" if layer["out_bits"] else "integers")
        print(f"  layer {i} ({layer['node']}): {layer['inputs']} -> {layer['outputs']}, "
              f"{layer['bits']}-bit inputs, {layer['weights']} weights, {out}")
    if not report["exact_products"]:
        print("  note: some scales are not powers of two, so QONNX's float32 products may round "
              "across a threshold that the exact product does not cross (docs/import.md)")
    return 0


def run_main(model: str, inputs: str, *, device: str, simulator: str | None,
             json_out: bool) -> int:
    """``onebit run model.npz --input data.npy``: outputs and classes of each row."""
    from ..host import Accelerator, MLPParams, golden
    from ..host.params import ModelFileError

    try:
        mlp = MLPParams.load(model)
    except (ModelFileError, OSError) as e:
        return _fail("run", str(e), json_out)
    try:
        x = np.load(inputs, allow_pickle=False)
    except (OSError, ValueError) as e:
        return _fail("run", f"{inputs}: not a readable .npy array ({e})", json_out)
    if x.ndim == 1:
        x = x[None, :]
    try:
        if device == "golden":
            out = golden.mlp(x, mlp)
        else:
            options = {} if simulator is None else {"simulator": simulator}
            with Accelerator.open(device, timeout=600, **options) as acc:
                out = acc.mlp(x, mlp)
    except (ValueError, TypeError, OSError) as e:
        return _fail("run", str(e), json_out)
    classes = out.argmax(axis=1)
    if json_out:
        print(json.dumps({"outputs": out.tolist(), "classes": classes.tolist()}))
        return 0
    kind = "levels" if mlp.layers[-1].thresholds is not None else "integers"
    print(f"{len(out)} rows through {len(mlp.layers)} layers on {device}; outputs are {kind}")
    for i, (row, c) in enumerate(zip(out, classes, strict=True)):
        print(f"  row {i}: class {c}  {' '.join(str(v) for v in row)}")
    return 0
