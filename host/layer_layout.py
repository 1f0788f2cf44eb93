"""Where a layer lives on the device: one definition for the layer engine and the host driver.

Plain Python and NumPy. For a device with a layer engine (``DeviceConfig.layer``), with
``D = d_model``, ``L = lanes``, ``C = cols``, ``Dw = D / L`` words per binary row and ``Dc = D / C``
words per residual or parameter row:

- weight store, from a layer's ``w_base``: ``Wq``, ``Wk``, ``Wv`` (3D rows), ``Wo`` (D rows),
  ``W1`` (F rows), each row ``Dw`` words, then ``W2`` (D rows of ``ceil(F / L)`` words); each
  of ``[Wq; Wk; Wv]``, ``Wo``, ``W1``, ``W2`` starts on a line of the banked store
  (``matrix_offsets``; ``weight_banks`` words a line);
- threshold store, from ``th_base``: ``tq``, ``tk``, ``tv`` (3D), then ``t1`` (F) (one-bit
  engines only);
- parameter store, from ``p_base``, ``Dc`` words each: ``th_attn``, ``tc``, ``so``, ``th_ffn``,
  ``s2``, then ``ta`` in ``ceil(H / C)`` words (zero padded). The LM head's parameters are
  ``th_out`` (``Dc`` words);
- activation store: the engine's scratch regions (``act_regions``), sized for ``max_t`` tokens;
  LAYER overwrites them (and whatever LOAD_ACTIVATIONS put there);

An engine with ``max_bits = A_m > 1`` or ternary weights (``LayerConfig.multi_threshold``;
``L_m = 2^A_m - 1``) keeps every multi-threshold in the parameter store, and its activations as
bit-planes:

- parameter store (``param_offsets``): the multi-threshold rows ``th_attn``, ``tc``, ``th_ffn``,
  ``tqkv`` (``tq|tk|tv``, 3D channels) and ``t1`` (``max_ff`` channels), each ``G`` words
  per group of ``C`` channels (``mt_group_words``: ``L_m`` rounded up to the
  ``param_read_words`` a read port gives, so every group starts a run the store reads in one
  go): word ``g G + j`` holds threshold ``j`` (0-based) of channels ``g C .. g C + C - 1`` (a
  layer of A < A_m bits uses the first ``2^A - 1``; the rest and the channels beyond the row
  are padding); then ``so``, ``s2`` (``Dc`` words each) and ``ta``, the whole padded to a
  multiple of ``param_read_words`` words, so a layer's ``p_base`` (which the engine checks)
  and every row start a run. The head's ``th_out`` is such a row too; the threshold store is
  not used;
- activation store: a token's row of A-bit levels is its A bit-planes one after another (plane
  ``i`` of an N-channel row at word ``i ceil(N / L)`` of the row), so regions are ``A_m`` times
  the one-bit sizes (twice that again with ternary weights: a row that products read holds
  each plane twice, side by side, ``ceil(N / L)`` words each, to meet a ternary weight row's
  two planes);
- weight store, with ternary weights: each matrix starts where its ternary rows would (twice
  the binary offsets); a ternary row is ``[P_lo | P_hi]``, each plane ``ceil(K / L)`` words.
- residual store: the rows ``X`` of the tokens, ``Dc`` words each, from ``res_base``; LAYER
  replaces them with ``X2`` in place.
"""

from __future__ import annotations

import enum

import numpy as np

from .packing import check_bits

__all__ = ["EngineStep", "PARAM_ROWS", "MT_ROWS", "check_precision", "mt_levels",
           "param_read_words", "mt_group_words",
           "param_offsets", "head_param_words", "matrix_offsets", "act_regions",
           "check_layer",
           "param_words_per_layer", "layer_weight_words",
           "layer_thresh_count", "layer_weights", "layer_thresholds", "layer_param_values",
           "head_weights", "head_param_values"]

class EngineStep(enum.IntEnum):
    """What the layer engine does in a cycle (its ``step`` port, for profiling in simulation):
    the numerics' steps of a layer, the LM head's product, and the command's own overhead."""

    IDLE = 0
    SETUP = 1           # sizes, region checks, the verdict
    QUANTISE = 2        # step 1: X >= th_attn (or th_out for the head)
    QKV = 3             # step 2: Qb | Kb | Vb
    ATTENTION = 4       # steps 3-5: thresholds loaded, KV appended, every query, Cb rows
    OUT = 5             # step 6: Cb . Wo^T through the residual unit, X1 >= th_ffn
    FFN_UP = 6          # step 7: X1b . W1^T >= t1
    FFN_DOWN = 7        # step 8: Hb . W2^T through the residual unit
    HEAD = 8            # the LM head's product
    DONE = 9            # the answer


#: The parameter store's per-layer rows (``Dc`` words each), in order; ``ta`` follows them.
PARAM_ROWS = ("th_attn", "tc", "so", "th_ffn", "s2")


def _dims(dev) -> tuple[int, int, int, int]:
    c, ly = dev.core, dev.layer
    if ly is None:
        raise ValueError("this device has no layer engine (DeviceConfig.layer is None)")
    return ly.d_model, c.lanes, c.cols, ly.heads


def act_regions(dev) -> dict[str, int]:
    """First word of each scratch region in the activation store, and ``end`` (words used):
    ``xb`` (binarised input, ``Dw`` a token), ``qkv`` (``Qb|Kb|Vb``, ``3 Dw``), ``cb`` (context
    bits, ``Dw``), ``x1b`` (``X1 >= th_ffn``, ``Dw``), ``hb`` (``ceil(max_ff / L)``), each
    ``max_bits`` times that with multi-bit activations."""
    d, lanes, _, _ = _dims(dev)
    t, dw = dev.core.max_t * dev.layer.max_bits * dev.layer.row_copies, d // lanes
    r = {"xb": 0}
    r["qkv"] = r["xb"] + t * dw
    r["cb"] = r["qkv"] + 3 * t * dw
    r["x1b"] = r["cb"] + t * dw
    r["hb"] = r["x1b"] + t * dw
    r["end"] = r["hb"] + t * -(-dev.layer.max_ff // lanes)
    return r


#: The multi-threshold rows of an engine with ``max_bits > 1``, in order, and their channels
#: (``"F"``: ``max_ff``).
MT_ROWS = (("th_attn", "D"), ("tc", "D"), ("th_ffn", "D"), ("tqkv", "3D"), ("t1", "F"))


def _round_up(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m``."""
    return -(-n // m) * m


def mt_levels(dev) -> int:
    """``L_m = 2^max_bits - 1``: the parameter words a group of channels takes in a
    multi-threshold row (1 on a one-bit engine)."""
    return (1 << dev.layer.max_bits) - 1


def param_read_words(dev) -> int:
    """Consecutive words each of the parameter store's two read ports gives a cycle, so that
    the multi-threshold unit reads twice that many thresholds a cycle: 4 from ``max_bits`` 3
    on (a group's 7 thresholds at A = 3 in one cycle, 15 at A = 4 in two), 2 at ``max_bits`` 2
    (3 in one), 1 on a one-bit engine."""
    bits = dev.layer.max_bits
    return 4 if bits >= 3 else 2 if bits == 2 else 1


def mt_group_words(dev) -> int:
    """``G``: the parameter words a group of ``cols`` channels takes in a multi-threshold row,
    ``L_m`` rounded up to whole runs of ``param_read_words`` (8 at ``max_bits`` 3, 16 at 4, 4
    at 2; 1 on a one-bit engine), so a group's thresholds start a run."""
    return _round_up(mt_levels(dev), param_read_words(dev))


def param_offsets(dev) -> dict[str, int]:
    """Word offsets of a layer's rows in the parameter store (from its ``p_base``), and
    ``end`` (the words it takes)."""
    d, _, cols, heads = _dims(dev)
    dc = d // cols
    off, at = {}, 0
    if not dev.layer.multi_threshold:
        rows = [(n, dc) for n in PARAM_ROWS]
    else:
        lm = mt_group_words(dev)
        sizes = {"D": dc, "3D": 3 * dc, "F": -(-dev.layer.max_ff // cols)}
        rows = [(n, sizes[c] * lm) for n, c in MT_ROWS] + [("so", dc), ("s2", dc)]
    for name, words in rows:
        off[name] = at
        at += words
    off["ta"] = at
    off["end"] = _round_up(at + -(-heads // cols), param_read_words(dev))
    return off


def param_words_per_layer(dev) -> int:
    return param_offsets(dev)["end"]


def head_param_words(dev) -> int:
    """Parameter words of the LM head's ``th_out``."""
    d, _, cols, _ = _dims(dev)
    return d // cols * mt_group_words(dev)


def _mt_values(dev, t: np.ndarray, channels: int) -> np.ndarray:
    """A multi-threshold row (``(n,)`` or ``(n, L)``) in the layout above, ``channels`` wide
    (padded), clamped into the parameter field: every comparison it takes part in keeps its
    answer (the values compared lie well inside it)."""
    from .device_config import PARAM_BITS

    cols, lm = dev.core.cols, mt_group_words(dev)
    t = np.asarray(t, np.int64)
    t = t[:, None] if t.ndim == 1 else t
    top = (1 << (PARAM_BITS - 1)) - 1
    groups = -(-channels // cols)
    out = np.full((groups * cols, lm), top, np.int64)
    out[:t.shape[0], :t.shape[1]] = np.clip(t, -top - 1, top)
    # word g * G + j holds column j of channels g * cols ...: (groups, G, cols)
    return out.reshape(groups, cols, lm).transpose(0, 2, 1).reshape(-1)


def _line(dev, words: int) -> int:
    """``words`` rounded up to whole lines of the banked weight store."""
    return _round_up(words, dev.weight_banks)


def matrix_offsets(dev, f: int) -> dict[str, int]:
    """Word offsets of a layer's matrices from its ``w_base`` (each starts on a line of the
    banked weight store, so the GEMV unit can read it), and ``end``."""
    d, lanes, _, _ = _dims(dev)
    rc = dev.layer.row_copies
    dw, fw = d // lanes * rc, -(-f // lanes) * rc
    o = {"Wqkv": 0}
    o["Wo"] = _line(dev, 3 * d * dw)
    o["W1"] = o["Wo"] + _line(dev, d * dw)
    o["W2"] = o["W1"] + _line(dev, f * dw)
    o["end"] = o["W2"] + _line(dev, d * fw)
    return o


def layer_weight_words(dev, f: int) -> int:
    """Weight words of one layer with feed-forward width ``f`` (line padding included)."""
    return matrix_offsets(dev, f)["end"]


def layer_thresh_count(dev, f: int) -> int:
    """Threshold entries of a layer (rounded up to whole lines of the banked store; none on a
    multi-bit engine, which keeps them in the parameter store)."""
    d, _, _, _ = _dims(dev)
    if dev.layer.multi_threshold:
        return 0
    return _round_up(3 * d + f, dev.thresh_banks)




def _word_bytes(bits: np.ndarray, lanes: int) -> bytes:
    """Rows of 0/1 as ``ceil(K / lanes)`` little-endian ``lanes``-bit words each."""
    m, k = bits.shape
    padded = np.zeros((m, _round_up(k, lanes)), np.uint8)
    padded[:, :k] = bits
    return np.packbits(padded, axis=1, bitorder="little").tobytes()


def _weight_rows(name: str, w: np.ndarray, kind: str, lanes: int) -> bytes:
    """A weight matrix's rows as store words: binary rows, or ternary rows ``[P_lo | P_hi]``."""
    if kind == "binary":
        return _word_bytes(check_bits(name, w), lanes)
    m = w.shape[0]
    lo = np.frombuffer(_word_bytes((w >= 0).astype(np.uint8), lanes), np.uint8).reshape(m, -1)
    hi = np.frombuffer(_word_bytes((w > 0).astype(np.uint8), lanes), np.uint8).reshape(m, -1)
    return np.hstack([lo, hi]).tobytes()


def layer_weights(dev, p) -> bytes:
    """The weight store words of a ``LayerParams`` as little-endian bytes, in the order above,
    each matrix starting at its ``matrix_offsets`` (zero words between)."""
    check_layer(dev, p)
    off = matrix_offsets(dev, p.d_ff)
    wb, lanes = dev.word_bytes, dev.core.lanes
    out = bytearray(off["end"] * wb)
    parts = {"Wqkv": b"".join(_weight_rows(n, getattr(p, n), p.weights, lanes)
                              for n in ("Wq", "Wk", "Wv")),
             **{n: _weight_rows(n, getattr(p, n), p.weights, lanes) for n in ("Wo", "W1", "W2")}}
    for name, blob in parts.items():
        out[off[name] * wb:off[name] * wb + len(blob)] = blob
    return bytes(out)


def check_precision(dev, what: str, bits: int, weights: str) -> None:
    """Raise ``ValueError`` unless the device's layer engine computes ``bits``-bit activations
    with ``weights`` weights (its ``max_bits`` and ``weight_kinds``, from IDENTIFY)."""
    ly = dev.layer
    if bits > ly.max_bits or weights not in ly.weight_kinds:
        raise ValueError(f"the device's layer engine computes activations of up to "
                         f"{ly.max_bits} bit{'s' * (ly.max_bits > 1)} with "
                         f"{' or '.join(ly.weight_kinds)} weights (IDENTIFY); {what} has "
                         f"{bits}-bit activations and {weights} weights (golden.layer and "
                         f"golden.generate compute it on the host)")


def check_layer(dev, p) -> None:
    """Raise ``ValueError`` naming the mismatch if ``LayerParams`` ``p`` cannot run on ``dev``."""
    d, _, _, heads = _dims(dev)
    check_precision(dev, "this layer", p.bits, p.weights)
    if (p.d_model, p.heads) != (d, heads):
        raise ValueError(f"the device's layer engine is built for D = {d}, H = {heads}; this "
                         f"layer has D = {p.d_model}, H = {p.heads}")
    if p.d_ff > dev.layer.max_ff:
        raise ValueError(f"the layer's feed-forward width F = {p.d_ff} exceeds the device's "
                         f"max_ff = {dev.layer.max_ff}")


def layer_thresholds(dev, p) -> np.ndarray:
    """The threshold store entries of a layer, clamped into the core's field (same bits)."""
    check_layer(dev, p)
    if dev.layer.multi_threshold:
        return np.zeros(0, np.int64)
    t = np.concatenate([p.tq, p.tk, p.tv, p.t1]).astype(np.int64)
    return dev.core.clamp_thresholds(t)


def layer_param_values(dev, p) -> np.ndarray:
    """The parameter store values of a layer (``param_words_per_layer * cols`` integers)."""
    check_layer(dev, p)
    d, _, cols, heads = _dims(dev)
    ta = np.zeros(-(-heads // cols) * cols, np.int64)
    ta[:heads] = p.ta
    if not dev.layer.multi_threshold:
        return np.concatenate([np.asarray(getattr(p, n), np.int64) for n in PARAM_ROWS] + [ta])
    qkv = np.concatenate([np.asarray(p.tq).reshape(d, -1), np.asarray(p.tk).reshape(d, -1),
                          np.asarray(p.tv).reshape(d, -1)])
    rows = {"th_attn": (p.th_attn, d), "tc": (p.tc, d), "th_ffn": (p.th_ffn, d),
            "tqkv": (qkv, 3 * d), "t1": (p.t1, dev.layer.max_ff)}
    v = np.concatenate([_mt_values(dev, *rows[n]) for n, _ in MT_ROWS] +
                       [np.asarray(p.so, np.int64), np.asarray(p.s2, np.int64), ta])
    return np.concatenate([v, np.zeros(param_words_per_layer(dev) * cols - len(v), np.int64)])


def head_weights(dev, wout: np.ndarray, kind: str = "binary") -> bytes:
    """The weight store words of the LM head ``Wout`` (V x D) as little-endian bytes (ternary:
    rows ``[P_lo | P_hi]``)."""
    _dims(dev)
    return _weight_rows("Wout", wout, kind, dev.core.lanes)


def head_param_values(dev, th_out: np.ndarray) -> np.ndarray:
    d, _, _, _ = _dims(dev)
    if dev.layer.multi_threshold:
        return _mt_values(dev, th_out, d)
    return np.asarray(th_out, np.int64)
