"""The whole layer and the language model on the device: ``load_layer``, ``layer``, ``decode``,
``load_model``, ``logits``, ``generate``.

A device with a layer engine (``DeviceConfig.layer``) runs every step of the spec's layer on
chip, the KV cache included; the host sends residual rows and reads residual rows back. Layer
``index`` lives in fixed regions of the stores (``store_plan``) and uses KV cache slot
``index``; the LM head's ``Wout`` and ``th_out`` follow the last slot's regions. Embedding
lookup and the argmax stay on the host; the layers and the head's binary product do not::

    with Accelerator.open("sim", config=dev) as acc:
        acc.load_model(model)
        tokens = acc.generate(prompt, 20)            # equals golden.generate(prompt, 20, model)
        print(acc.stats)                             # cycles, array utilization
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .device_config import RESIDUAL_BYTES, DeviceConfig
from .golden import _check_rows, _check_tokens, embed
from .layer_layout import (
    check_layer,
    check_precision,
    head_param_values,
    head_param_words,
    head_weights,
    layer_param_values,
    layer_thresh_count,
    layer_thresholds,
    layer_weight_words,
    layer_weights,
    param_words_per_layer,
)
from .link import LinkError, LinkTimeout
from .params import LayerParams, ModelParams
from .protocol import (
    LAYER_ANSWER,
    LAYER_BITS_SHIFT,
    LAYER_FRESH,
    LAYER_HEAD,
    LAYER_TERNARY,
    Opcode,
)
from .stats import DeviceStats, counted

__all__ = ["LayerCommands", "StorePlan", "store_plan", "device_for",
           "CacheLostError"]


class CacheLostError(LinkError):
    """A KV cache slot does not hold the tokens the host put there: the device lost its caches
    (a reset, or another host). The command's result is void; prefill again (``layer``)."""


@dataclass(frozen=True)
class StorePlan:
    """Where layer ``i`` and the LM head live: ``w_base``, ``th_base``, ``p_base`` per layer
    slot (strides sized for ``max_ff``), then the head's weights and parameters."""

    layer_w: tuple[int, ...]
    layer_th: tuple[int, ...]
    layer_p: tuple[int, ...]
    head_w: int
    head_p: int


def store_plan(dev: DeviceConfig) -> StorePlan:
    ly = dev.layer
    if ly is None:
        raise ValueError("this device has no layer engine: build it with a LayerConfig")
    sw, st, sp = (layer_weight_words(dev, ly.max_ff), layer_thresh_count(dev, ly.max_ff),
                  param_words_per_layer(dev))
    slots = range(ly.kv_slots)
    return StorePlan(tuple(i * sw for i in slots), tuple(i * st for i in slots),
                     tuple(i * sp for i in slots), ly.kv_slots * sw, ly.kv_slots * sp)


def device_for(model: ModelParams, *, rows: int = 4, cols: int = 4, lanes: int = 32,
               max_t: int = 32, kv_capacity: int = 128, frame_bytes: int = 4096,
               max_k: int | None = None, weight_banks: int | None = None) -> DeviceConfig:
    """A device whose layer engine and stores hold ``model`` (every layer and the head), with
    an ``rows x cols x lanes`` array; the KV cache holds ``kv_capacity`` tokens per layer. Its
    weight store has up to ``weight_banks`` banks (default ``rows x cols``; the most, a power
    of two, whose lines suit the model's rows), so decode runs at up to the array's width.
    ``max_k`` (default ``A max(D, F)``, the least that works for the model's largest
    activation bits A) sizes the core's rows; the core and the engine take A-bit activations."""
    from dataclasses import replace

    from .core_config import CoreConfig
    from .device_config import LayerConfig, gemv_problem
    from .layer_layout import act_regions

    if not isinstance(model, ModelParams):
        raise TypeError(f"model must be ModelParams, not {type(model).__name__}")
    d, v, n_layers = model.d_model, model.vocab, len(model.layers)
    heads, f = model.layers[0].heads, max(p.d_ff for p in model.layers)
    bits = max([p.bits for p in model.layers] + [model.head_bits])
    kinds = ("binary", "ternary") if "ternary" in [p.weights for p in model.layers] + \
        [model.head_weights] else ("binary",)
    if len(kinds) > 1:
        bits = max(bits, 2)             # ternary weights run on the multi-bit engine
    if max_k is None:
        max_k = bits * len(kinds) * -(-max(d, f) // lanes) * lanes
    core = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=max_k, max_t=max_t,
                      max_n=max(3 * d, f, v), max_bits=bits)
    ly = LayerConfig(d_model=d, heads=heads, max_ff=f, kv_capacity=kv_capacity,
                     kv_slots=n_layers, res_words=max_t * d // cols,
                     param_words=1, max_bits=bits, weight_kinds=kinds)
    # Plan with roomy stores first, then size each store to what the plan uses.
    sized = DeviceConfig(core=core, frame_bytes=frame_bytes, act_words=1 << 20,
                         weight_words=1 << 24, thresh_words=1 << 20, result_beats=1 << 16,
                         layer=replace(ly, param_words=1 << 16))
    # The most weight banks up to rows x cols (a power of two) whose lines suit the model.
    top = rows * cols if weight_banks is None else weight_banks
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"weight_banks must be a positive integer, not {weight_banks!r}")
    banks = 1 << (top.bit_length() - 1)
    while banks > 1 and gemv_problem(d, lanes=lanes, cols=cols, banks=banks):
        banks //= 2
    if banks > 1:
        sized = replace(sized, weight_banks=banks)
    plan = store_plan(sized)
    weight_words = plan.head_w + v * len(kinds) * (d // lanes)
    params = plan.head_p + head_param_words(sized)
    return DeviceConfig(
        core=core, frame_bytes=frame_bytes, act_words=act_regions(sized)["end"],
        weight_words=weight_words,
        thresh_words=max(1, n_layers * layer_thresh_count(sized, f)),
        result_beats=max(64, -(-v // cols)), weight_banks=sized.weight_banks,
        layer=replace(ly, param_words=params))


class LayerCommands:
    """Mixed into ``Accelerator``; needs its ``config``, ``stats``, ``_client``, ``_request``
    and ``_load``."""

    config: DeviceConfig
    stats: DeviceStats

    def _plan(self) -> StorePlan:
        plan = getattr(self, "_store_plan", None)
        if plan is None:
            plan = self._store_plan = store_plan(self.config)
            self._loaded: dict[int, LayerParams] = {}
            # Tokens in each KV cache slot: absent, the slot is to be emptied by its next
            # command (LAYER_FRESH); None, lost (decode refuses until a prefill).
            self._cache_len: dict[int, int | None] = {}
            self._head: ModelParams | None = None
        return plan

    def _slot(self, index: int) -> int:
        self._plan()
        slots = self.config.layer.kv_slots
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                not 0 <= index < slots:
            raise ValueError(f"layer index must be in 0..{slots - 1} (the device has {slots} "
                             f"KV cache slots), not {index!r}")
        return int(index)

    def _forget_caches(self) -> None:
        if getattr(self, "_store_plan", None) is not None:
            self._cache_len.clear()

    def reset_stats(self) -> None:
        """Start ``stats`` (``onebit.host.stats.DeviceStats``) afresh."""
        self.stats = DeviceStats()

    # ------------------------------------------------------------------ loading
    @counted
    def load_layer(self, params: LayerParams, index: int = 0) -> None:
        """Load a layer's weights, thresholds and parameters into slot ``index`` and empty its
        KV cache (the slot's next command starts from position 0)."""
        if not isinstance(params, LayerParams):
            raise TypeError(f"params must be LayerParams, not {type(params).__name__}")
        plan, i = self._plan(), self._slot(index)
        dev = self.config
        check_layer(dev, params)
        self._load(Opcode.LOAD_WEIGHTS, layer_weights(dev, params), base=plan.layer_w[i])
        th = layer_thresholds(dev, params)
        if th.size:                         # (a multi-bit engine keeps them with the parameters)
            self._load(Opcode.LOAD_THRESHOLDS, th.astype("<i2").tobytes(), base=plan.layer_th[i])
        self._load(Opcode.LOAD_PARAMS, layer_param_values(dev, params).astype("<i4").tobytes(),
                   base=plan.layer_p[i])
        self._loaded[i] = params
        self._cache_len.pop(i, None)        # the next command empties the slot on the device

    @counted
    def load_model(self, model: ModelParams) -> None:
        """Load every layer of a language model (layer ``i`` in slot ``i``) and its LM head."""
        if not isinstance(model, ModelParams):
            raise TypeError(f"model must be ModelParams, not {type(model).__name__}")
        plan, dev = self._plan(), self.config
        if len(model.layers) > dev.layer.kv_slots:
            raise ValueError(f"the model has {len(model.layers)} layers; the device holds "
                             f"{dev.layer.kv_slots} (one KV cache slot each)")
        copies = 2 if model.head_weights == "ternary" else 1
        need = plan.head_w + model.vocab * copies * (dev.layer.d_model // dev.core.lanes)
        if need > dev.weight_words:
            raise ValueError(f"the LM head ({model.vocab} x {model.d_model}) does not fit the "
                             f"weight store: {need} words needed, {dev.weight_words} there")
        if model.vocab > dev.core.max_n:
            raise ValueError(f"vocabulary of {model.vocab} exceeds the core's max_n "
                             f"{dev.core.max_n}")
        check_precision(dev, "the model's LM head", model.head_bits, model.head_weights)
        for i, p in enumerate(model.layers):
            check_precision(dev, f"layer {i}", p.bits, p.weights)
        for i, p in enumerate(model.layers):
            self.load_layer(p, i)
        self._load(Opcode.LOAD_WEIGHTS, head_weights(dev, model.Wout, model.head_weights),
                   base=plan.head_w)
        self._load(Opcode.LOAD_PARAMS, head_param_values(dev, model.th_out).astype("<i4")
                   .tobytes(), base=plan.head_p)
        self._head = model

    def reset_cache(self) -> None:
        """Empty every KV cache slot."""
        self._plan()
        self._request(Opcode.CLEAR_CACHE)
        self._cache_len.clear()

    # ------------------------------------------------------------------ running
    @counted
    def layer(self, x: np.ndarray, index: int = 0) -> np.ndarray:
        """Prefill: the layer on rows ``x`` (T, D) int16 from position 0 (the slot's cache is
        emptied first, then holds these T tokens). Returns ``X2`` (T, D) int16, equal to
        ``golden.layer(x, params)``."""
        return self._run_layer(x, index, fresh=True)

    @counted
    def decode(self, x_row: np.ndarray, index: int = 0) -> np.ndarray:
        """One token (or a few) after the tokens already in the slot's KV cache: ``x_row``
        (D,) or (n, D) int16. Returns the output row(s) in the same shape."""
        arr = np.asarray(x_row)
        one = arr.ndim == 1
        out = self._run_layer(arr[None, :] if one else arr, index, fresh=False)
        return out[0] if one else out

    def _run_layer(self, x, index: int, *, fresh: bool) -> np.ndarray:
        i = self._slot(index)
        p = self._layer_params(i)
        ly = self.config.layer
        rows = self._rows(x, ly.d_model)
        if not fresh and i in self._cache_len and self._cache_len[i] is None:
            raise CacheLostError(f"KV cache slot {i} was lost (a device reset or a failed "
                                 f"LAYER): prefill again with layer() before decode()")
        fresh = fresh or i not in self._cache_len       # a slot the host has not filled
        self._check_room(i, rows.shape[0], fresh)
        out = np.empty(rows.shape, np.int16)
        for t0, block in self._blocks(rows):
            self._load_residual(block)
            self._layer_command(i, p, len(block), fresh=fresh and t0 == 0)
            out[t0:t0 + len(block)] = self._read_residual(len(block))
        return out

    @counted
    def logits(self, x: np.ndarray) -> np.ndarray:
        """The LM head on the device: ``(x >= th_out) . Wout^T`` (T, V) integers."""
        m = self._model()
        rows = self._rows(x, m.d_model)
        out = np.empty((rows.shape[0], m.vocab), np.int64)
        for t0, block in self._blocks(rows):
            self._load_residual(block)
            for j in range(len(block)):
                out[t0 + j] = self._head_command(j, 1)[0]
        return out

    @counted
    def generate(self, prompt_tokens, n: int, *, progress=None) -> np.ndarray:
        """Greedy generation like ``golden.generate``: the prompt through every layer (prefill,
        in blocks of ``max_t`` tokens), then one token at a time with the KV caches. The residual
        rows stay on the device from layer to layer and into the LM head; the host looks up
        embeddings and takes the argmax of the last row's logits. ``progress(done, n)`` is
        called after each token.

        If the device loses its KV caches on the way (a reset: ``CacheLostError``) or a LAYER's
        answer is lost (``LinkTimeout``), the whole sequence so far (prompt and the tokens
        generated) is prefilled again from position 0; prefill equals decode, so the tokens are
        exactly those of an undisturbed run. At most ``link.retries`` such restarts a token,
        then the error is raised."""
        m = self._model()
        tok = _check_tokens(prompt_tokens, m.vocab)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, not {n!r}")
        total = len(tok) + max(n - 1, 0)
        for i in range(len(m.layers)):
            self._check_room(i, total, True)
        if m.P is not None and total > m.P.shape[0]:
            raise ValueError(f"{len(tok)} prompt tokens and {n} more need {total} positions; "
                             f"the model's position table has {m.P.shape[0]}")
        out: list[int] = []
        pending, fresh, restarts = [int(t) for t in tok], True, 0
        while len(out) < n:
            start = 0 if fresh else len(tok) + len(out) - 1     # the position of pending[0]
            try:
                logits = self._pass(m, embed(pending, m, start), fresh=fresh)
            except (CacheLostError, LinkTimeout):
                restarts += 1
                if restarts > self.link.retries:
                    raise
                self._cache_len.clear()
                pending, fresh = [int(t) for t in tok] + out, True
                self.stats.restarts += 1
                continue
            nxt = int(np.argmax(logits))        # the lowest index wins a tie
            out.append(nxt)
            pending, fresh, restarts = [nxt], False, 0
            if progress is not None:
                progress(len(out), n)
        return np.asarray(out, dtype=np.int64)

    def _pass(self, m: ModelParams, x: np.ndarray, *, fresh: bool) -> np.ndarray:
        """Rows ``x`` through every layer (the first block from position 0 if ``fresh``);
        return the logits of the last row."""
        for t0, block in self._blocks(x):
            self._load_residual(block)
            for i, p in enumerate(m.layers):
                self._layer_command(i, p, len(block), fresh=fresh and t0 == 0)
        return self._head_command(len(block) - 1, 1)[0]

    # ------------------------------------------------------------------ helpers
    def _layer_params(self, i: int) -> LayerParams:
        p = self._loaded.get(i)
        if p is None:
            raise ValueError(f"no layer is loaded in slot {i}: call load_layer first")
        return p

    def _model(self) -> ModelParams:
        self._plan()
        if self._head is None:
            raise ValueError("no model is loaded: call load_model first")
        return self._head

    @staticmethod
    def _rows(x, d: int) -> np.ndarray:
        rows = _check_rows("x", x, d)
        if rows.shape[0] == 0:
            raise ValueError("x must hold at least one row")
        return rows

    def _blocks(self, rows: np.ndarray):
        step = self.config.core.max_t
        for t0 in range(0, rows.shape[0], step):
            yield t0, rows[t0:t0 + step]

    def _check_room(self, i: int, t: int, fresh: bool) -> None:
        cap = self.config.layer.kv_capacity
        start = 0 if fresh else self._cache_len.get(i) or 0
        if start + t > cap:
            raise ValueError(f"{t} tokens after {start} cached ones exceed the KV cache's "
                             f"capacity of {cap} tokens")

    def _ideal(self, t: int, f: int, bits: int = 1) -> float:
        c, d = self.config.core, self.config.layer.d_model
        return bits * (c.ideal_cycles(t, 3 * d, d) + c.ideal_cycles(t, d, d) +
                       c.ideal_cycles(t, f, d) + c.ideal_cycles(t, d, f))

    def _load_residual(self, rows: np.ndarray) -> None:
        self._load(Opcode.LOAD_RESIDUAL, rows.astype("<i2").tobytes(), base=0)

    def _read_residual(self, t: int) -> np.ndarray:
        words = t * self.config.layer.d_model // self.config.core.cols
        unit = RESIDUAL_BYTES * self.config.core.cols
        raw = bytearray()
        per_read = (0xFFFF - 2) // unit
        for w0 in range(0, words, per_read):
            count = min(per_read, words - w0)
            got = self._request(Opcode.READ_RESIDUAL, offset=w0, count=count)
            if len(got) != count * unit:
                raise LinkError(f"READ_RESIDUAL answered {len(got)} bytes, not {count * unit}")
            raw += got
        return np.frombuffer(bytes(raw), "<i2").reshape(t, -1).copy()

    def _layer_command(self, i: int, p: LayerParams, t: int, *, fresh: bool) -> None:
        plan = self._plan()
        # A slot that is empty, not yet filled or lost starts afresh (the callers refuse a
        # decode on a lost slot before this; a prefill empties it anyway).
        fresh = fresh or not self._cache_len.get(i)
        want = (0 if fresh else self._cache_len[i]) + t
        self._cache_len[i] = None           # unknown until the answer says
        flags = ((LAYER_FRESH if fresh else 0) | (p.bits - 1) << LAYER_BITS_SHIFT |
                 (LAYER_TERNARY if p.weights == "ternary" else 0))
        got = self._send(t, self._ideal(t, p.d_ff, p.bits * (2 if p.weights == "ternary" else 1)),
                         flags=flags, slot=i,
                         shift=p.r, f=p.d_ff, n=0, res_base=0, w_base=plan.layer_w[i],
                         th_base=plan.layer_th[i], p_base=plan.layer_p[i])
        if got != want:
            for j in self._cache_len:       # a reset empties every slot
                self._cache_len[j] = None
            raise CacheLostError(f"KV cache slot {i} holds {got} tokens after this LAYER, but "
                                 f"the host put {want} there: the device lost its KV caches "
                                 f"(a reset?), so this result is void; prefill again")
        self._cache_len[i] = want
        self.stats.tokens += t

    def _head_command(self, row: int, t: int) -> np.ndarray:
        """Logits (t, V) of residual rows ``row .. row + t - 1`` already on the device."""
        m, plan, c = self._head, self._plan(), self.config.core
        d = self.config.layer.d_model
        ternary = m.head_weights == "ternary"
        flags = (LAYER_HEAD | (m.head_bits - 1) << LAYER_BITS_SHIFT |
                 (LAYER_TERNARY if ternary else 0))
        work = m.head_bits * (2 if ternary else 1)
        self._send(t, work * c.ideal_cycles(t, m.vocab, d), flags=flags, slot=0, shift=0,
                   f=0, n=m.vocab, res_base=row * d // c.cols, w_base=plan.head_w, th_base=0,
                   p_base=plan.head_p)
        tiles = -(-m.vocab // c.cols)
        raw = self._read_results(tiles * t, False)
        vals = np.frombuffer(raw, "<i2").astype(np.int64).reshape(tiles, t, c.cols)
        if ternary:                         # the two planes' products summed: twice the value
            vals = vals >> 1
        return vals.transpose(1, 0, 2).reshape(t, tiles * c.cols)[:, :m.vocab]

    def _send(self, t: int, ideal: float, **args: int) -> int:
        """Send LAYER; count its cycles; return the KV cache slot's length after it."""
        info = self._request(Opcode.LAYER, t=t, **args)
        if len(info) != 4 * len(LAYER_ANSWER):
            raise LinkError(f"LAYER answered {len(info)} bytes, not {4 * len(LAYER_ANSWER)}")
        cycles, active, kv_length = struct.unpack(f"<{len(LAYER_ANSWER)}I", info)
        st = self.stats
        st.commands += 1
        st.cycles += cycles
        st.active += active
        st.ideal += ideal
        st.per_command.append((t, cycles, active))
        return kv_length
