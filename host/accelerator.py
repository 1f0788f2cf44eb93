"""The user's handle on an accelerator: ``Accelerator.open(...)``, ``linear``, ``counters``.

The same driver runs against the gateware in simulation (``"sim"``, the default) and against a
board over a serial port (``"serial:///dev/ttyUSB1?baud=3000000"``). It learns the device's
parameters from IDENTIFY and tiles any product to fit the device's stores and limits::

    from onebit.host import Accelerator

    with Accelerator.open("sim") as acc:
        y = acc.linear(x_bits, w_bits)                 # (T, N) integers, like golden
        b = acc.linear(x_bits, w_bits, thresholds)     # (T, N) bits
        z = acc.linear(levels, w, thresholds, bits=4, weights="ternary")   # levels
        print(acc.counters())
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import numpy as np

from .core_config import Op
from .device_config import RESULT_INT_BYTES, DeviceConfig
from .golden import multi_threshold
from .layer_driver import LayerCommands
from .link import DeviceError, LinkClient, LinkError, Transport
from .loads import load_unit
from .mlp import MLPParams
from .packing import check_bits
from .params import (
    check_activation_bits,
    check_kind,
    check_levels,
    check_weights,
    clamp_thresholds,
    multi_thresholds,
)
from .product_plan import plan_product
from .protocol import COUNTERS, RUN_ANSWER, Opcode, run_flags
from .stats import DeviceStats, counted, product_floor
from .thermometer import lower_inputs, lower_thresholds, lower_weights, lowered_k

__all__ = ["Accelerator", "DeviceError", "LinkError", "check_linear_inputs"]


class Accelerator(LayerCommands):
    """A connected device. Use :meth:`open`; close it (or use ``with``) when done. The layer
    and model methods (``load_layer``, ``layer``, ``decode``, ``load_model``, ``generate``)
    come from :class:`onebit.host.layer_driver.LayerCommands`."""

    def __init__(self, transport: Transport, *, timeout: float = 30.0, retries: int = 3):
        try:
            _check_link_options(timeout, retries)
            self._client = LinkClient(transport, timeout=timeout, retries=retries)
        except BaseException:
            transport.close()
            raise
        self._closed = False
        self.stats = DeviceStats()
        try:
            self.config: DeviceConfig = self._client.identify()
        except BaseException:
            self._client.close()
            raise

    # ------------------------------------------------------------------ opening and closing
    @classmethod
    def open(cls, url: str = "sim", *, timeout: float | None = None, retries: int = 3,
             **options) -> Accelerator:
        """Open a device.

        ``"sim"``: the gateware on a simulator. Options: ``simulator`` (``"amaranth"``, the
        default; ``"verilator"`` or ``"icarus"`` through cocotb), ``config`` (a
        ``DeviceConfig``) or ``rows``/``cols``/``lanes`` to change the default one, or
        ``board`` (``"icebreaker"``, ``"ulx3s-25f"``, ...): the device of that board's
        bitstream, elaborated for its FPGA family (Icarus or Verilator only).

        ``"sim://verilator"`` (or ``icarus``, ``amaranth``) names the simulator in the URL.

        ``"serial://PORT?baud=N"``: a board on a serial port (``baud`` defaults to 3000000).

        ``timeout`` (seconds a response may take; positive) and ``retries`` (a non-negative
        integer) are checked before anything starts; a failed open stops what it started.
        """
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, not {url!r}")
        _check_link_options(1.0 if timeout is None else timeout, retries)
        parsed = urlparse(url)
        if parsed.scheme == "sim":
            named = parsed.netloc + parsed.path
            if parsed.query or parsed.fragment or named not in ("", "amaranth", "verilator",
                                                                 "icarus"):
                raise ValueError(f"unknown simulator URL {url!r}: use 'sim', 'sim://amaranth', "
                                 f"'sim://icarus' or 'sim://verilator'")
            if named:
                if options.get("simulator", named) != named:
                    raise ValueError(f"the URL {url!r} names simulator {named!r} but "
                                     f"simulator={options['simulator']!r} was given")
                options["simulator"] = named
        if url == "sim" or parsed.scheme == "sim":
            try:
                from ..sim.transports import open_sim
            except ImportError as e:       # pragma: no cover - depends on the install
                raise ImportError("simulation needs the 'sim' extra: "
                                  "pip install 'onebit[sim]'") from e
            transport = open_sim(**options)
            default_timeout = 600.0
        elif parsed.scheme == "serial":
            if options:
                raise TypeError(f"serial devices take no options, not {sorted(options)}")
            from .serial_transport import SerialTransport

            query = parse_qs(parsed.query)
            baud = query.pop("baud", ["3000000"])[0]
            if query:
                raise ValueError(f"unknown serial URL parameters {sorted(query)} in {url!r}")
            if not baud.isdigit():
                raise ValueError(f"baud must be an integer, not {baud!r} in {url!r}")
            port = parsed.netloc + parsed.path
            if not port:
                raise ValueError(f"serial URL names no port: {url!r}")
            transport = SerialTransport(port, baud=int(baud))
            default_timeout = 10.0
        else:
            raise ValueError(f"unknown device URL {url!r}: use 'sim' or "
                             f"'serial:///dev/ttyUSB1?baud=3000000'")
        return cls(transport, timeout=default_timeout if timeout is None else timeout,
                   retries=retries)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def link(self) -> LinkClient:
        """The link client (its ``stats`` count retries and skipped frames)."""
        return self._client

    def _request(self, opcode: Opcode, data: bytes = b"", **args: int) -> bytes:
        if self._closed:
            raise LinkError("the accelerator is closed")
        return self._client.request(opcode, data, **args)

    # ------------------------------------------------------------------ commands
    def reset(self) -> None:
        """Clear the device's results, link counters and KV caches."""
        self._request(Opcode.RESET)
        self._forget_caches()

    def counters(self) -> dict[str, int]:
        """The device's performance counters: ``core_*`` of the last RUN (cycles busy,
        computing, stalled, waiting for weights, held by backpressure) and ``link_*`` since
        reset (see ``onebit.host.protocol.LINK_COUNTERS``)."""
        data = self._request(Opcode.READ_COUNTERS)
        if len(data) != 4 * len(COUNTERS):
            raise LinkError(f"READ_COUNTERS answered {len(data)} bytes, not {4 * len(COUNTERS)}")
        return dict(zip(COUNTERS, struct.unpack(f"<{len(COUNTERS)}I", data), strict=True))

    @counted
    def linear(self, x: np.ndarray, w: np.ndarray, thresholds: np.ndarray | None = None, *,
               bits: int = 1, weights: str = "binary") -> np.ndarray:
        """``golden.linear`` on the device: ``y[t, n] = prod(hat(x[t]), w[n])`` as an ``int64``
        array ``(T, N)``, or with ``thresholds`` (``(N,)`` or ``(N, L')``, any integers that fit
        int64) the output levels ``MT(y[t, n], thresholds[n])`` as ``uint8``.

        ``x`` ``(T, K)`` holds activation levels of ``bits`` bits (1..4; for 1 bit, 0/1 where 1
        is +1); ``w`` ``(N, K)`` binary weights (0/1) or ternary ones (-1, 0, +1,
        ``weights="ternary"``). Any size is tiled to the device: tokens and outputs in blocks
        its stores hold, and K beyond the core's ``max_k`` in segments whose integer results
        the host adds.

        Every product runs on the array's XNOR-popcount, by one of the spec's identities:

        - on a core that takes ``bits``-bit activations (``CoreConfig.max_bits``), each row
          travels as its bit-planes and the device sums their products (``2^i`` each) in its
          accumulators: binary weights with K within ``max_k_at(bits)`` are one product, with
          every threshold level applied on the device (one RUN per level); ternary weights
          are one such product per weight plane, which the host sums and halves;
        - with ``thresholds``, when the thermometer lowering fits the core
          (``planes * (2^bits - 1) * K <= max_k``, ``onebit.host.thermometer``, and the
          threshold store holds an output's levels): one binary
          product of the thermometer bits against the repeated weight planes, with each
          threshold level applied on the device (one RUN per level on the resident weights),
          so only levels come back;
        - otherwise one binary product of every activation bit-plane (stacked as tokens)
          against every weight plane (side by side as outputs; K beyond ``max_k`` in
          segments), whose results the host sums with the plane weights ``2^i`` (halved for
          ternary) and thresholds exactly.

        Weights stay resident while token blocks stream past them (``plan_product``).
        ``stats.calls`` records the call's bytes on the link beside its floor (weights,
        activations and results once: ``onebit.host.stats``).
        """
        bits = check_activation_bits("bits", bits)
        weights = check_kind("weights", weights)
        one_level = thresholds is None or np.ndim(thresholds) == 1
        if bits == 1 and weights == "binary" and one_level:
            xb, wb, thr = check_linear_inputs(x, w, thresholds)
            self._call_floor += product_floor(self.config, xb.shape[0], wb.shape[0],
                                              wb.shape[1], levels=0 if thr is None else 1)
            if wb.shape[1] <= self.config.core.max_k:
                return self._product(Op.XOR, xb, wb, thr)
            total = self._dots(xb, wb)
            return total if thr is None else (total >= thr).astype(np.uint8)
        xq = check_levels("x", x, bits)
        if xq.ndim != 2 or 0 in xq.shape:
            raise ValueError(f"x must be 2-D (tokens, K) and not empty, not shape {xq.shape}")
        wm = check_weights("w", w, weights, (None, xq.shape[1]))
        if wm.shape[0] == 0:
            raise ValueError(f"w must not be empty, not shape {wm.shape}")
        t = None if thresholds is None else multi_thresholds("thresholds", thresholds,
                                                              wm.shape[0])
        k = xq.shape[1]
        self._call_floor += product_floor(
            self.config, xq.shape[0], wm.shape[0], k, bits=bits,
            weight_planes=1 if weights == "binary" else 2,
            levels=0 if t is None else (1 if t.ndim == 1 else t.shape[1]))
        c = self.config.core
        native = 1 < bits <= c.max_bits and c.max_k_at(bits) >= 1
        if native and weights == "binary" and k <= c.max_k_at(bits):
            wb = wm.astype(np.uint8)
            if t is None or self._lowering_fits(xq.shape[0], wm.shape[0], k, t, bits):
                return self._product(Op.XOR, xq, wb, t, bits)
            # (The threshold store cannot hold an output's levels: the host applies them.)
            return multi_threshold(self._product(Op.XOR, xq, wb, None, bits), t)
        if t is not None and self._lowering_fits(xq.shape[0], wm.shape[0],
                                                 lowered_k(k, bits, weights), t):
            # The device applies every level: one binary product of the thermometer lowering.
            return self._product(Op.XOR, lower_inputs(xq, bits, weights),
                                 lower_weights(wm, bits, weights),
                                 lower_thresholds(t, k, bits, weights))
        # One product for every plane: the weight planes side by side as outputs (each row
        # sent once) and, on a one-bit core, the activation planes stacked as tokens.
        t_all, n_all = xq.shape[0], wm.shape[0]
        wp = (wm if weights == "binary" else np.concatenate([wm >= 0, wm > 0])).astype(np.uint8)
        if native:
            y = self._dots(xq, wp, bits)
        else:
            stacked = np.concatenate([(xq >> i) & 1 for i in range(bits)]).astype(np.uint8)
            y = (self._dots(stacked, wp).reshape(bits, t_all, -1)
                 << np.arange(bits).reshape(bits, 1, 1)).sum(axis=0)
        total = y.reshape(t_all, -1, n_all).sum(axis=1)
        if weights == "ternary":
            total //= 2                 # (the planes' sum is even: exact)
        return total if t is None else multi_threshold(total, t)

    def _lowering_fits(self, t: int, n: int, k: int, thr: np.ndarray, bits: int = 1) -> bool:
        """Whether a product of ``k`` elements at ``bits`` bits with ``thr``'s levels (the
        thermometer lowering's, or a product of planes) fits the core and one output's
        threshold sets fit the threshold store."""
        if k > self.config.core.max_k_at(bits):
            return False
        try:
            plan_product(self.config, t, n, k, 1 if thr.ndim == 1 else thr.shape[1], bits)
        except ValueError:
            return False
        return True

    @counted
    def mlp(self, x: np.ndarray, m: MLPParams) -> np.ndarray:
        """``golden.mlp`` on the device: each layer is a ``linear`` on the array with its
        multi-thresholds applied by the device where the thermometer lowering fits ``max_k``
        (so only levels cross the link between layers); the last layer's offsets are added on
        the host. ``x``: raw floats (through the model's input quantizer) or integer levels."""
        if not isinstance(m, MLPParams):
            raise TypeError(f"m must be MLPParams, not {type(m).__name__}")
        q = m.levels(x)
        for layer in m.layers:
            q = self.linear(q, layer.w, layer.thresholds, bits=layer.bits,
                            weights=layer.weights)
        last = m.layers[-1]
        return q if last.thresholds is not None else q + last.offset

    def _dots(self, x: np.ndarray, w: np.ndarray, bits: int = 1) -> np.ndarray:
        """``prod(hat(x[t]), w[n])`` of ``bits``-bit levels (``dot`` of bits for one) and
        binary weights, ``int64`` (T, N): RUNs of K within ``max_k_at(bits)`` whose integer
        results the host adds."""
        max_k = self.config.core.max_k_at(bits)
        total = np.zeros((x.shape[0], w.shape[0]), np.int64)
        for k0 in range(0, x.shape[1], max_k):
            total += self._product(Op.XOR, x[:, k0:k0 + max_k], w[:, k0:k0 + max_k], None,
                                   bits)
        return total

    # ------------------------------------------------------------------ tiling
    def _product(self, op: Op, x: np.ndarray, w: np.ndarray, thr: np.ndarray | None,
                 bits: int = 1):
        """``x`` (T, K) levels of ``bits`` bits (0/1 for one) and ``w`` (N, K) bits, K within
        ``max_k_at(bits)``: the integers (T, N), or with ``thr`` ((N,) or (N, J) sorted) the
        levels ``MT`` applied on the device, one RUN per threshold set, as ``uint8`` (T, N).
        Tiled by ``plan_product``: resident weights. With ``bits`` > 1 the device takes each
        row as its bit-planes and sums their products itself (``CoreConfig.max_bits``)."""
        dev, c = self.config, self.config.core
        t_all, k = x.shape
        n_all = w.shape[0]
        th = None if thr is None else c.clamp_thresholds(thr.reshape(n_all, -1))
        levels = 0 if th is None else th.shape[1]
        plan = plan_product(dev, t_all, n_all, k, levels, bits)
        kw = -(-k // c.lanes)
        out = np.zeros((t_all, n_all), np.uint8 if levels else np.int64)

        def load_group(g0: int, g: int) -> None:
            self._load(Opcode.LOAD_WEIGHTS, _words(w[g0:g0 + g], c.lanes))
            if levels:
                self._load(Opcode.LOAD_THRESHOLDS, th[g0:g0 + g].T.astype("<i2").tobytes())

        def run_block(t0: int, t: int, g0: int, g: int) -> None:
            for n0, n in _blocks(g, plan.n_block):
                for j in range(max(levels, 1)):
                    info = self._request(Opcode.RUN, op=int(op),
                                         flags=run_flags(threshold=bool(levels), bits=bits),
                                         t=t, n=n, k=k,
                                         act_base=0, weight_base=n0 * kw,
                                         thresh_base=j * g + n0)
                    beats = dev.result_beats_for(t, n, bool(levels))
                    got = struct.unpack(f"<{len(RUN_ANSWER)}I", info)[0] \
                        if len(info) == 4 * len(RUN_ANSWER) else None
                    if got != beats:
                        raise LinkError(f"RUN wrote {got} result beats, expected {beats}")
                    raw = self._read_results(beats, bool(levels))
                    out[t0:t0 + t, g0 + n0:g0 + n0 + n] += _decode(dev, raw, t, n, bool(levels))

        groups = list(_blocks(n_all, plan.group))
        tokens = list(_blocks(t_all, plan.t_block))
        if plan.weights_outer:
            for g0, g in groups:
                load_group(g0, g)
                for t0, t in tokens:
                    self._load(Opcode.LOAD_ACTIVATIONS, _plane_words(x[t0:t0 + t], c.lanes,
                                                                     bits))
                    run_block(t0, t, g0, g)
        else:
            for t0, t in tokens:
                self._load(Opcode.LOAD_ACTIVATIONS, _plane_words(x[t0:t0 + t], c.lanes, bits))
                for g0, g in groups:
                    load_group(g0, g)
                    run_block(t0, t, g0, g)
        return out

    def _load(self, opcode: Opcode, data: bytes, base: int = 0) -> None:
        unit = load_unit(self.config, opcode)
        step = self.config.frame_bytes
        for start in range(0, len(data), step):
            self._request(opcode, data[start:start + step], offset=base + start // unit)

    def _read_results(self, beats: int, thresholded: bool) -> bytes:
        bpb = self.config.result_beat_bytes(thresholded)
        per_read = min(beats, (0xFFFF - 2) // bpb)
        out = bytearray()
        for b0, count in _blocks(beats, per_read):
            data = self._request(Opcode.READ_RESULTS, offset=b0, count=count)
            if len(data) != count * bpb:
                raise LinkError(f"READ_RESULTS answered {len(data)} bytes, not {count * bpb}")
            out += data
        return bytes(out)


def _check_link_options(timeout: object, retries: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not np.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, not {retries!r}")


def check_linear_inputs(x_bits, w_bits, thresholds=None):
    """Validate ``linear``'s arguments; return them as ``uint8``, ``uint8`` and ``int64`` (or
    None). Raise ``TypeError`` or ``ValueError`` naming the argument and the problem."""
    x = check_bits("x_bits", x_bits)
    w = check_bits("w_bits", w_bits)
    if x.ndim != 2:
        raise ValueError(f"x_bits must be 2-D (tokens, K), not shape {x.shape}")
    if w.ndim != 2:
        raise ValueError(f"w_bits must be 2-D (outputs, K), not shape {w.shape}")
    if 0 in x.shape or 0 in w.shape:
        raise ValueError(f"x_bits {x.shape} and w_bits {w.shape} must not be empty")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x_bits has K = {x.shape[1]} but w_bits has K = {w.shape[1]}")
    k = x.shape[1]
    thr = None if thresholds is None else _check_thresholds(thresholds, w.shape[0], k)
    return x, w, thr


def _check_thresholds(thresholds, n: int, k: int) -> np.ndarray:
    """Any integers (fitting int64), clamped into ``[-K, K + 1]``: beyond it ``dot >= t`` is
    always 1 or always 0, exactly as at the nearer end."""
    th = np.asarray(thresholds)
    if th.shape != (n,):
        raise ValueError(f"thresholds must have shape ({n},) (one per output), not {th.shape}")
    return clamp_thresholds("thresholds", th, -k, k + 1)


def _blocks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


def _words(bits: np.ndarray, lanes: int) -> bytes:
    """Rows of 0/1 as ``ceil(K / lanes)`` little-endian words each (1 bit per value)."""
    m, k = bits.shape
    kw = -(-k // lanes)
    padded = np.zeros((m, kw * lanes), np.uint8)
    padded[:, :k] = bits
    return np.packbits(padded, axis=1, bitorder="little").tobytes()


def _plane_words(levels: np.ndarray, lanes: int, bits: int) -> bytes:
    """Rows of ``bits``-bit levels as the core takes them: each row its bit-planes, top plane
    first, ``ceil(K / lanes)`` little-endian words each (``bits`` = 1: the bits as they are)."""
    if bits == 1:
        return _words(levels, lanes)
    m, k = levels.shape
    kw = -(-k // lanes)
    planes = np.zeros((m, bits, kw * lanes), np.uint8)
    for p, i in enumerate(range(bits - 1, -1, -1)):
        planes[:, p, :k] = (levels >> i) & 1
    return np.packbits(planes.reshape(m, -1), axis=1, bitorder="little").tobytes()


def _decode(dev: DeviceConfig, raw: bytes, t: int, n: int, thresholded: bool) -> np.ndarray:
    """Result bytes of one RUN as ``(T, N)`` integers or bits; padding must be zero."""
    c = dev.core
    tiles = -(-n // c.cols)
    if thresholded:
        tt = -(-t // c.rows)
        flat = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
        grid = flat.reshape(tiles, tt, dev.tile_bytes * 8)[..., :c.rows * c.cols]
        full = grid.reshape(tiles, tt, c.rows, c.cols).transpose(1, 2, 0, 3).reshape(
            tt * c.rows, tiles * c.cols)
    else:
        vals = np.frombuffer(raw, f"<i{RESULT_INT_BYTES}").astype(np.int64)
        full = vals.reshape(tiles, t, c.cols).transpose(1, 0, 2).reshape(t, tiles * c.cols)
    body = full[:t, :n]
    if full[t:].any() or full[:, n:].any():
        raise LinkError("the device's results have non-zero padding beyond the tokens or "
                        "outputs asked for")
    return body
