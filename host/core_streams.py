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

__all__ = ["GemmStreams", "encode_gemm", "decode_results", "expected_gemm"]


@dataclass(frozen=True)
class GemmStreams:
    """The beats of each input stream for one command, and the result beats it yields."""

    cmd: dict
    act: list[int]
    weight: list[int]
    thresh: list[int]
    result_beats: int


def _operands(cfg: CoreConfig, x_bits, w_bits):
    x = check_bits("x_bits", x_bits)
    w = check_bits("w_bits", w_bits)
    if x.ndim != 2 or w.ndim != 2:
        raise ValueError(f"x_bits and w_bits must be 2-D, not shapes {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x_bits has K = {x.shape[1]} but w_bits has K = {w.shape[1]}")
    cfg.check_command(x.shape[0], w.shape[0], x.shape[1])
    return x, w


def encode_gemm(cfg: CoreConfig, op: Op, x_bits: np.ndarray, w_bits: np.ndarray,
                thresholds: np.ndarray | None = None) -> GemmStreams:
    """Return the stream beats for ``Y = X . W^T`` (``op``), thresholded if ``thresholds``."""
    x, w = _operands(cfg, x_bits, w_bits)
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
    act = [c for row in to_chunks(x, cfg.lanes) for c in row]
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
                  thresholds: np.ndarray | None = None):
    """The golden model's ``ints (T, N)`` and, with thresholds, ``bits (T, N)`` (else None)."""
    k = np.asarray(x_bits).shape[1]
    xp, wp = pack_bits(x_bits, name="x_bits"), pack_bits(w_bits, name="w_bits")
    if Op(op) == Op.XOR:
        ints = golden.binary_linear(xp, wp, k).astype(np.int64)
    else:
        ints = golden.mdot(xp[:, None, :], wp[None, :, :]).astype(np.int64)
    bits = None if thresholds is None else (ints >= np.asarray(thresholds)).astype(np.uint8)
    return ints, bits
