"""Import of quantized MLPs from QONNX graphs (as Brevitas's ``export_qonnx`` writes them).

``import_qonnx(path)`` returns an ``MLPParams`` and a report. The graph is cleaned up with
QONNX's own ``cleanup_model`` and read as one path from the float input to the output:

- the input's quantizer (``BipolarQuant``, or ``Quant`` of 2-4 bits, per-tensor or per-feature
  scale) becomes the model's ``InputQuantizer``;
- each ``Gemm`` (or ``MatMul``) whose weights come through a ``BipolarQuant`` (binary) or a
  2-bit signed narrow-range ``Quant`` (ternary) starts a layer; its input must be quantized with
  a per-tensor scale and an integer zero-point;
- the element-wise operations after it (``BatchNormalization``, ``Mul``, ``Div``, ``Add``,
  ``Sub`` by constants, ``Relu``, ``Clip``) and the next activation quantizer fold into the
  layer's multi-thresholds: for every integer ``z = prod(hat(q), w)`` the product can take,
  the operations and the quantizer run on QONNX's own executor (``execute_node``: onnxruntime
  for the standard operations, QONNX's ``Quant`` for the quantizer) on the Gemm output the
  exact product gives, and threshold ``j`` is the least ``z`` whose level reaches ``j``. A
  channel whose level falls as ``z`` rises has its weight row negated (FINN's rule for a
  negative batch-norm gamma);
- after the last layer only positive scalar ``Mul``/``Div`` and scalar ``Add``/``Sub`` may
  follow (they keep the argmax); its outputs are the integers ``z + offset``.

Anything else is refused with ``ImportRefused``, naming the node and what is supported. The
thresholds reproduce QONNX's decisions exactly whenever its Gemm computes the exact product in
float32, which holds when the activation and weight scales are powers of two (the report's
``exact_products``); with other scales QONNX's float32 sums can round across a decision that the
exact product does not cross (``docs/import.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .mlp import InputQuantizer, MLPLayer, MLPParams, int_range

__all__ = ["import_qonnx", "ImportRefused", "SUPPORTED"]

SUPPORTED = ("supported: an MLP of Gemm/MatMul layers with binary (BipolarQuant) or ternary "
             "(2-bit signed narrow-range Quant) weights, activation quantizers of 1 bit "
             "(BipolarQuant) or 2-4 bits (Quant), and BatchNormalization, Mul, Div, Add, Sub by "
             "constants, Relu and Clip between them")
_ELEMENTWISE = ("BatchNormalization", "Mul", "Div", "Add", "Sub", "Relu", "Clip", "Identity")
_SHAPE_ONLY = ("Flatten", "Reshape", "Identity")
_CHUNK = 1 << 21


class ImportRefused(ValueError):
    """The graph holds something outside the importer's scope; the message names it."""


def _name(node) -> str:
    return f"{node.op_type} node {node.name!r}"


def import_qonnx(path: str | Path) -> tuple[MLPParams, dict[str, Any]]:
    """Read the QONNX graph at ``path``; return the MLP and a report (``layers``, ``input``,
    ``output``, ``exact_products``). Raise ``ImportRefused`` for what is out of scope."""
    try:
        import onnx  # noqa: F401 - the extra's presence, checked before any work
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.cleanup import cleanup_model
    except ImportError as e:
        raise ImportError("importing QONNX needs the 'import' extra: "
                          "pip install 'onebit[import]'") from e
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        model = cleanup_model(ModelWrapper(str(path)))
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad file
        raise ImportRefused(f"{path}: not a readable ONNX graph ({type(e).__name__}: {e})") \
            from None
    return _Importer(model).run()


class _Importer:
    def __init__(self, model):
        from onnx import numpy_helper

        self.model, self.graph = model, model.graph
        _dynamic_batch(self.graph)
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.opset = next((o.version for o in model.model.opset_import
                           if o.domain in ("", "ai.onnx")), 13)
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.weight_nodes = {n.output[0]: n for n in self.graph.node
                             if n.op_type in ("Quant", "BipolarQuant")
                             and n.input[0] in self.consts}
        self.exact = True

    # ------------------------------------------------------------------ walk
    def run(self) -> tuple[MLPParams, dict[str, Any]]:
        g = self.graph
        if len(g.input) != 1 or len(g.output) != 1:
            raise ImportRefused(f"the graph has {len(g.input)} inputs and {len(g.output)} "
                                f"outputs; an MLP has one of each")
        cur, out_name = g.input[0].name, g.output[0].name
        visited = {id(n) for n in self.weight_nodes.values()}
        quant = None            # the input quantizer, once seen
        act = None              # the current activations: dict(s, z0, vmin, bits, bipolar)
        layer = None            # the open layer: dict(w, kind, bits, alpha, beta, chain, ...)
        layers: list[MLPLayer] = []
        report_layers = []
        while cur != out_name:
            users = [n for n in self.consumers.get(cur, []) if id(n) not in visited]
            if len(users) != 1:
                raise ImportRefused(f"tensor {cur!r} feeds {len(users)} nodes; an MLP is one "
                                    f"path from input to output")
            node = users[0]
            visited.add(id(node))
            op = node.op_type
            if op in _SHAPE_ONLY and layer is None:
                cur = node.output[0]
                continue
            if op in ("Quant", "BipolarQuant"):
                if layer is None and act is not None:
                    raise ImportRefused(f"{_name(node)} quantizes activations twice in a row; "
                                        f"{SUPPORTED}")
                q = self._act_quant(node)
                if act is None:
                    quant = q["input"]
                else:
                    thr, w = self._fold(layer, node, q)
                    layers.append(MLPLayer(w, bits=layer["bits"], weights=layer["kind"],
                                           thresholds=thr))
                    report_layers.append(self._report(layer, q["bits"]))
                    layer = None
                act = q
                cur = node.output[0]
                continue
            if op in ("Gemm", "MatMul"):
                if act is None:
                    raise ImportRefused(f"{_name(node)} comes before the input is quantized: the "
                                        f"first operation must quantize the network's input; "
                                        f"{SUPPORTED}")
                if layer is not None:
                    raise ImportRefused(f"{_name(node)} follows a layer without an activation "
                                        f"quantizer between them (a float layer in the middle);"
                                        f" {SUPPORTED}")
                layer = self._layer(node, cur, act)
                cur = node.output[0]
                continue
            if op in _ELEMENTWISE and layer is not None:
                self._check_elementwise(node, cur, layer["n"])
                layer["chain"].append(node)
                cur = node.output[0]
                continue
            where = "before any layer" if layer is None else "after a layer"
            raise ImportRefused(f"{_name(node)} ({where}) is not supported; {SUPPORTED}")
        if layer is None:
            if not layers:
                raise ImportRefused(f"the graph has no quantized layer; {SUPPORTED}")
            output = {"kind": "levels", "bits": act["bits"], "scale": act["s"],
                      "zeropt": act["z0"], "min": act["vmin"], "bipolar": act["bipolar"]}
        else:
            offset, a, b = self._final(layer)
            layers.append(MLPLayer(layer["w"], bits=layer["bits"], weights=layer["kind"],
                                   offset=offset))
            report_layers.append(self._report(layer, None))
            output = {"kind": "integers", "scale": a, "bias": b}
        mlp = MLPParams(tuple(layers), quant)
        return mlp, {"layers": report_layers, "exact_products": bool(self.exact), "output": output,
                     "input": {"kind": quant.kind, "bits": quant.bits}}

    # ------------------------------------------------------------------ quantizers
    def _const(self, node, i: int, what: str) -> np.ndarray:
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.consts:
            raise ImportRefused(f"{_name(node)}: its {what} is not a constant")
        return np.asarray(self.consts[name])

    def _act_quant(self, node) -> dict[str, Any]:
        """An activation quantizer: its levels' meaning (and the InputQuantizer it is)."""
        if node.op_type == "BipolarQuant":
            s = self._const(node, 1, "scale")
            if s.size != 1 or float(s.ravel()[0]) <= 0:
                raise ImportRefused(f"{_name(node)}: the scale must be one positive number")
            s = float(s.ravel()[0])
            self.exact &= _pow2(s)
            return {"bits": 1, "s": s, "z0": 0.0, "vmin": -1, "bipolar": True,
                    "input": InputQuantizer("bipolar")}
        attrs = _attributes(node)
        signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        rounding = attrs.get("rounding_mode", b"ROUND")
        rounding = rounding.decode() if isinstance(rounding, bytes) else str(rounding)
        bits = self._const(node, 3, "bit width")
        if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]):
            raise ImportRefused(f"{_name(node)}: the bit width must be one integer")
        bits = int(bits.ravel()[0])
        if bits == 1:
            raise ImportRefused(f"{_name(node)} is a 1-bit Quant: 1-bit activations must be "
                                f"bipolar (BipolarQuant, as Brevitas's binary quantizers "
                                f"export)")
        if not 2 <= bits <= 4:
            raise ImportRefused(f"{_name(node)} quantizes activations to {bits} bits; "
                                f"supported are 1 (bipolar) to 4 bits")
        scale, zp = self._const(node, 1, "scale"), self._const(node, 2, "zero-point")
        lo, hi = int_range(bits, signed, narrow)
        inp = InputQuantizer("int", bits, scale.astype(np.float32).reshape(-1)
                             if scale.size > 1 else np.float32(scale.ravel()[0]),
                             zp.astype(np.float32).reshape(-1) if zp.size > 1
                             else np.float32(zp.ravel()[0]), signed, narrow,
                             rounding.upper())
        q = {"bits": bits, "vmin": lo, "bipolar": False, "input": inp, "signed": signed,
             "narrow": narrow}
        if scale.size == 1 and zp.size == 1:
            q["s"], q["z0"] = float(scale.ravel()[0]), float(zp.ravel()[0])
            self.exact &= _pow2(q["s"])
        return q

    def _weights(self, node, transposed: bool) -> tuple[np.ndarray, str, np.ndarray]:
        """Weights (N, K) as 0/1 (binary) or -1/0/1 (ternary), their kind and row scales."""
        src = node.input[1]
        wq = self.weight_nodes.get(src)
        if wq is None:
            raise ImportRefused(f"{_name(node)} has float weights (not from a BipolarQuant or "
                                f"Quant of a constant): a float layer; {SUPPORTED}")
        w = np.asarray(self.consts[wq.input[0]], np.float32)
        if w.ndim != 2:
            raise ImportRefused(f"{_name(wq)}: weights must be a matrix, not shape {w.shape}")
        scale = np.asarray(self.consts.get(wq.input[1], np.nan), np.float64)
        if not np.isfinite(scale).all() or (scale <= 0).any():
            raise ImportRefused(f"{_name(wq)}: weight scales must be positive constants")
        if wq.op_type == "BipolarQuant":
            kind, wi = "binary", np.where(w >= 0, 1, -1)
        else:
            attrs = _attributes(wq)
            signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
            bits = self._const(wq, 3, "bit width").ravel()
            zp = self._const(wq, 2, "zero-point")
            if not (bits.size == 1 and bits[0] == 2 and signed and narrow and not zp.any()):
                raise ImportRefused(f"{_name(wq)} quantizes weights to {bits.tolist()} bits "
                                    f"(signed={signed}, narrow={narrow}): supported weights are "
                                    f"binary (BipolarQuant) and ternary (2-bit signed "
                                    f"narrow-range Quant, zero-point 0)")
            from qonnx.custom_op.general.intquant import int_quant

            wf = int_quant(w, scale.astype(np.float32), np.float32(0), np.float32(2), True, True,
                           "ROUND")
            kind, wi = "ternary", np.rint(wf / scale).astype(np.int64)
        if not transposed:                      # MatMul: (K, N)
            wi, scale = wi.T, scale.T
        n = wi.shape[0]
        rows = np.broadcast_to(scale, wi.shape) if scale.ndim else np.full(wi.shape, scale)
        if (rows != rows[:, :1]).any():
            raise ImportRefused(f"{_name(wq)}: weight scales vary along the inputs; supported "
                                f"are one scale or one per output")
        sw = rows[:, 0].astype(np.float64)
        self.exact &= all(_pow2(v) for v in np.unique(sw))
        return wi.reshape(n, -1), kind, sw

    # ------------------------------------------------------------------ layers
    def _layer(self, node, cur: str, act: dict) -> dict[str, Any]:
        if "s" not in act:
            raise ImportRefused(f"{_name(node)}: its input's quantizer has a scale or zero-point "
                                f"per feature; a layer's input needs one scale and zero-point")
        if act["z0"] != int(act["z0"]):
            raise ImportRefused(f"{_name(node)}: its input's zero-point {act['z0']} is not an "
                                f"integer")
        alpha_g, beta_g, bias = 1.0, 1.0, None
        if node.op_type == "Gemm":
            attrs = _attributes(node)
            if attrs.get("transA", 0):
                raise ImportRefused(f"{_name(node)}: transA is not supported")
            alpha_g, beta_g = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
            transposed = bool(attrs.get("transB", 0))
            if len(node.input) > 2 and node.input[2]:
                bias = self._const(node, 2, "bias").astype(np.float64)
        else:
            transposed = False
        if node.input[0] != cur:
            raise ImportRefused(f"{_name(node)}: the activations must be its first input")
        wi, kind, sw = self._weights(node, transposed)
        n, k = wi.shape
        bits = act["bits"]
        levels = (1 << bits) - 1
        r = wi.sum(axis=1).astype(np.float64)
        s = act["s"] * alpha_g * sw
        self.exact &= _pow2(alpha_g)
        if act["bipolar"]:
            alpha, beta, offset = s, np.zeros(n), np.zeros(n, np.int64)
        else:
            alpha = s / 2
            beta = s * r * (levels / 2 + act["vmin"] - act["z0"])
            offset = (wi.sum(axis=1) * (levels + 2 * act["vmin"] - 2 * int(act["z0"])))
        if bias is not None:
            b = np.broadcast_to(bias.reshape(-1) if bias.size > 1 else bias.reshape(()),
                                (n,)).astype(np.float64)
            beta = beta + beta_g * b
        w = (wi > 0).astype(np.uint8) if kind == "binary" else wi.astype(np.int8)
        return {"node": node, "w": w, "kind": kind, "bits": bits, "n": n, "k": k,
                "alpha": alpha, "beta": beta, "chain": [], "out": node.output[0],
                "offset": offset, "bias": bias, "sw": sw}

    def _check_elementwise(self, node, cur: str, n: int) -> None:
        op = node.op_type
        if op in ("Relu", "Identity"):
            return
        if op == "Clip":
            for i in (1, 2):
                if i < len(node.input) and node.input[i] and node.input[i] not in self.consts:
                    raise ImportRefused(f"{_name(node)}: its bounds must be constants")
            return
        if op == "BatchNormalization":
            for i in range(1, 5):
                c = self._const(node, i, "parameters")
                if c.size not in (1, n):
                    raise ImportRefused(f"{_name(node)}: parameters of {c.size} values for "
                                        f"{n} channels")
            return
        if node.input[0] != cur or len(node.input) != 2:
            raise ImportRefused(f"{_name(node)}: the activations must be its first input and "
                                f"a constant its second")
        c = self._const(node, 1, "second input")
        if c.size not in (1, n):
            raise ImportRefused(f"{_name(node)}: {op} by a constant of {c.size} values; "
                                f"supported are a scalar or one per channel ({n})")

    def _run_chain(self, layer: dict, nodes: list, y: np.ndarray) -> np.ndarray:
        """The element-wise nodes on QONNX's executor, from the Gemm output ``y``."""
        from qonnx.core.onnx_exec import execute_node

        ctx = {name: v for name, v in self.consts.items()}
        ctx[layer["out"]] = y
        for node in nodes:
            for o in node.output:
                ctx[o] = np.zeros(y.shape, np.float32)
            execute_node(node, ctx, self.graph, self.opset)
        return np.asarray(ctx[nodes[-1].output[0]]) if nodes else y

    def _fold(self, layer: dict, quant, q: dict) -> tuple[np.ndarray, np.ndarray]:
        """The layer's multi-thresholds (N, L') for the quantizer ``quant`` and its weights
        (rows negated where the level falls as the product rises)."""
        if q["bits"] > 1 and "s" not in q:
            raise ImportRefused(f"{_name(quant)}: an activation quantizer needs one scale and "
                                f"zero-point, not one per channel")
        n = layer["n"]
        zmax = ((1 << layer["bits"]) - 1) * layer["k"]
        zs = np.arange(-zmax, zmax + 1, dtype=np.int64)
        lv = np.empty((zs.size, n), np.int64)
        step = max(1, _CHUNK // n)
        for i in range(0, zs.size, step):
            z = zs[i:i + step].astype(np.float64)
            y = (z[:, None] * layer["alpha"] + layer["beta"]).astype(np.float32)
            out = self._run_chain(layer, layer["chain"] + [quant], y).astype(np.float64)
            if q["bipolar"]:
                lv[i:i + step] = out >= 0
            else:
                lv[i:i + step] = np.rint(out / q["s"] + q["z0"]).astype(np.int64) - q["vmin"]
        step_up, step_down = np.diff(lv, axis=0) >= 0, np.diff(lv, axis=0) <= 0
        rising, falling = step_up.all(axis=0), step_down.all(axis=0)
        if not (rising | falling).all():
            bad = int(np.argmin(rising | falling))
            raise ImportRefused(f"{_name(quant)}: channel {bad}'s level is not monotone in the "
                                f"layer's product (the operations before it); cannot be "
                                f"thresholds")
        w = layer["w"].copy()
        flip = falling & ~rising
        if flip.any():                           # FINN: negate the row, flip the product
            lv[:, flip] = lv[::-1, flip]
            if layer["kind"] == "binary":
                w[flip] = 1 - w[flip]
            else:
                w[flip] = -w[flip]
        levels_out = (1 << q["bits"]) - 1
        thr = np.empty((n, levels_out), np.int64)
        for j in range(1, levels_out + 1):
            reached = lv >= j
            first = np.argmax(reached, axis=0)
            thr[:, j - 1] = np.where(reached.any(axis=0), zs[first], zmax + 1)
        return thr, w

    def _final(self, layer: dict) -> tuple[np.ndarray, float, float]:
        """The last layer's integer offsets, and the float output as ``scale * o + bias``."""
        sw, bias = layer["sw"], layer["bias"]
        if np.unique(sw).size > 1:
            raise ImportRefused(f"{_name(layer['node'])}: the last layer has a weight scale per "
                                f"output, which changes the argmax of its integers; end with a "
                                f"quantizer or use one scale")
        if bias is not None and np.unique(bias).size > 1:
            raise ImportRefused(f"{_name(layer['node'])}: the last layer has a bias per output, "
                                f"which changes the argmax of its integers; end with a "
                                f"quantizer or drop the bias")
        a = float(layer["alpha"][0])
        b = float(layer["beta"][0] - layer["alpha"][0] * layer["offset"][0])
        for node in layer["chain"]:
            op = node.op_type
            c = self.consts.get(node.input[1]) if len(node.input) > 1 else None
            if op not in ("Mul", "Div", "Add", "Sub", "Identity") or \
                    (c is not None and np.asarray(c).size != 1):
                raise ImportRefused(f"{_name(node)} after the last layer changes the argmax of "
                                    f"its integers; only scalar Mul, Div, Add and Sub may "
                                    f"follow it (end with a quantizer otherwise)")
            if op == "Identity":
                continue
            v = float(np.asarray(c).ravel()[0])
            if op in ("Mul", "Div") and v <= 0:
                raise ImportRefused(f"{_name(node)} multiplies the outputs by {v}; only a "
                                    f"positive scale keeps the argmax")
            a, b = {"Mul": (a * v, b * v), "Div": (a / v, b / v), "Add": (a, b + v),
                    "Sub": (a, b - v)}[op]
        return layer["offset"], a, b

    @staticmethod
    def _report(layer: dict, out_bits: int | None) -> dict[str, Any]:
        return {"node": layer["node"].name, "inputs": layer["k"], "outputs": layer["n"],
                "bits": layer["bits"], "weights": layer["kind"], "out_bits": out_bits}


def _attributes(node) -> dict[str, Any]:
    """A node's attributes as Python values."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pow2(v: float) -> bool:
    m, _ = np.frexp(v)
    return v > 0 and m == 0.5


def _dynamic_batch(graph) -> None:
    """Let the first dimension of every declared tensor be any size (the executor then takes
    batches other than the one the graph was exported with)."""
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        shape = vi.type.tensor_type.shape
        if len(shape.dim) >= 2:
            shape.dim[0].dim_param = "batch"
