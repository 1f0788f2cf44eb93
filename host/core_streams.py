"""What the GEMM core's streams carry for one product, and how its results read back.

The host side of ``onebit.hdl.core.gemm.GemmCore``'s protocol (see that module's docstring): the
same functions feed the Amaranth simulator, the cocotb testbenches and the host driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden
from .core_config import CoreConfig, Op, to_chunks
from .packing import check_bits, pack_bits
from .params import check_levels

__all__ = ["GemmStreams", "encode_gemm", "decode_results", "expected_gemm", "plane_chunks"]


@dataclass(frozen=True)
class GemmStreams:
    """The beats of each input stream for one command, and the result beats it yields."""

    cmd: dict
    act: list[int]
    weight: list[int]
    thresh: list[int]
    result_beats: int


def _operands(cfg: CoreConfig, x_bits, w_bits, bits: int = 1):
    x = check_bits("x_bits", x_bits) if bits == 1 else check_levels("x_bits", x_bits, bits)
    w = check_bits("w_bits", w_bits)
    if x.ndim != 2 or w.ndim != 2:
        raise ValueError(f"x_bits and w_bits must be 2-D, not shapes {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x_bits has K = {x.shape[1]} but w_bits has K = {w.shape[1]}")
    cfg.check_command(x.shape[0], w.shape[0], x.shape[1], bits)
    return x, w


def plane_chunks(x: np.ndarray, lanes: int, bits: int) -> list[int]:
    """An activation block's chunks as the core takes them: row after row, each row its
    ``bits`` bit-planes (plane i holds bit i of every level), top plane first."""
    planes = [to_chunks(((x >> i) & 1).astype(np.uint8), lanes)
              for i in range(bits - 1, -1, -1)]
    return [c for r in range(x.shape[0]) for plane in planes for c in plane[r]]


def encode_gemm(cfg: CoreConfig, op: Op, x_bits: np.ndarray, w_bits: np.ndarray,
                thresholds: np.ndarray | None = None, *, bits: int = 1) -> GemmStreams:
    """Return the stream beats for ``Y = X . W^T`` (``op``), thresholded if ``thresholds``.

    With ``bits`` > 1 (XOR only), ``x_bits`` holds levels of that many bits and ``Y`` is the
    spec's ``prod`` of A-bit activations with the binary weights."""
    if bits != 1 and Op(op) != Op.XOR:
        raise ValueError(f"Activations of {bits} bits take the XOR product only, not {op!r}")
    x, w = _operands(cfg, x_bits, w_bits, bits)
    t, k = x.shape
    n = w.shape[0]
    thr: list[int] = []
    if thresholds is not None:
        th = np.asarray(thresholds)
        if th.shape != (n,):
            raise ValueError(f"thresholds must have shape ({n},), not {th.shape}")
        if not np.issubdtype(th.dtype, np.integer):
            raise TypeError(f"thresholds must be integers, not dtype {th.dtype}")
        thr = [int(v) for v in cfg.clamp_thresholds(th)]
    cmd = {"op": Op(op), "threshold": int(thresholds is not None), "t": t, "n": n, "k": k}
    if cfg.max_bits > 1:
        cmd["bits_m1"] = bits - 1
    act = plane_chunks(x, cfg.lanes, bits)
    w_chunks = to_chunks(w, cfg.lanes)
    weight: list[int] = []
    thresh: list[int] = []
    for nb in range(0, n, cfg.cols):
        for row in w_chunks[nb:nb + cfg.cols]:
            weight.extend(row)
        thresh.extend(thr[nb:nb + cfg.cols])
    tiles = -(-n // cfg.cols)
    per_tile = -(-t // cfg.rows) if thresholds is not None else t
    return GemmStreams(cmd=cmd, act=act, weight=weight, thresh=thresh,
                       result_beats=tiles * per_tile)


def decode_results(cfg: CoreConfig, t: int, n: int, beats: list[tuple[list[int], int, int]],
                   *, thresholded: bool):
    """Reassemble result beats ``(ints, bits, last)`` into ``ints (T, N)`` (without thresholds)
    or ``bits (T, N)`` (with thresholds); the other is None.

    Raises ``ValueError`` if the number of beats, the ``last`` flags or the padding is wrong.
    """
    tiles = -(-n // cfg.cols)
    per_tile = -(-t // cfg.rows) if thresholded else t
    if len(beats) != tiles * per_tile:
        raise ValueError(f"expected {tiles * per_tile} result beats, got {len(beats)}")
    ints = np.zeros((t, n), np.int64)
    bits = np.zeros((t, n), np.uint8)
    for i, (vals, packed, last) in enumerate(beats):
        tile, sub = divmod(i, per_tile)
        if bool(last) != (i == len(beats) - 1):
            raise ValueError(f"result beat {i} has last = {last}")
        nb = tile * cfg.cols
        cols = min(cfg.cols, n - nb)
        if thresholded:
            tb = sub * cfg.rows
            rows = min(cfg.rows, t - tb)
            grid = [[(packed >> (r * cfg.cols + c)) & 1 for c in range(cfg.cols)]
                     for r in range(cfg.rows)]
            if any(vals) or any(grid[r][c] for r in range(cfg.rows) for c in range(cfg.cols)
                                if r >= rows or c >= cols):
                raise ValueError(f"result beat {i} has non-zero padding")
            for r in range(rows):
                bits[tb + r, nb:nb + cols] = grid[r][:cols]
        else:
            if any(vals[cols:]) or packed:
                raise ValueError(f"result beat {i} has non-zero padding columns")
            ints[sub, nb:nb + cols] = vals[:cols]
    return (None, bits) if thresholded else (ints, None)


def expected_gemm(op: Op, x_bits: np.ndarray, w_bits: np.ndarray,
                  thresholds: np.ndarray | None = None, *, bits: int = 1):
    """The golden model's ``ints (T, N)`` and, with thresholds, ``bits (T, N)`` (else None);
    with ``bits`` > 1, ``golden.linear`` of those levels."""
    if bits != 1:
        ints = golden.linear(x_bits, w_bits, bits=bits)
        out = None if thresholds is None else (ints >= np.asarray(thresholds)).astype(np.uint8)
        return ints, out
    k = np.asarray(x_bits).shape[1]
    xp, wp = pack_bits(x_bits, name="x_bits"), pack_bits(w_bits, name="w_bits")
    if Op(op) == Op.XOR:
        ints = golden.binary_linear(xp, wp, k).astype(np.int64)
    else:
        ints = golden.mdot(xp[:, None, :], wp[None, :, :]).astype(np.int64)
    bits = None if thresholds is None else (ints >= np.asarray(thresholds)).astype(np.uint8)
    return ints, bits
