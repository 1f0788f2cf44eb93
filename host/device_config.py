"""The whole device's parameters: the GEMM core plus the on-chip stores the host link fills.

Plain Python (the host imports it without Amaranth; ``onebit.hdl.link.device`` builds from it).
The host learns a device's ``DeviceConfig`` from IDENTIFY and tiles its work to fit.

Stores, each addressed in its own units:

- activations: ``act_words`` words of ``lanes`` bits (a row of K bits is ``ceil(K / lanes)``
  words, rows one after another);
- weights: ``weight_words`` words of ``lanes`` bits, rows in output-channel order;
- thresholds: ``thresh_words`` thresholds (16-bit two's complement on the wire);
- results: ``result_beats`` result beats of the last RUN (see ``result_beat_bytes``).

A LOAD frame carries at most ``frame_bytes`` bytes of data: the device stages a frame's data
until its CRC checks, so a damaged frame writes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .checks import check_count
from .core_config import MEMORY_KINDS, SPRAM_BLOCKS, CoreConfig, spram_blocks

__all__ = ["DeviceConfig", "LayerConfig", "gemv_problem", "THRESHOLD_BYTES", "RESULT_INT_BYTES",
           "PARAM_BYTES",
           "RESIDUAL_BYTES", "PARAM_BITS"]

#: Bytes of one threshold on the wire (little-endian two's complement).
THRESHOLD_BYTES = 2
#: Bytes of one integer result on the wire (little-endian two's complement).
RESULT_INT_BYTES = 2
#: Bytes of one residual-stream integer on the wire (int16, little-endian).
RESIDUAL_BYTES = 2
#: Bytes of one layer parameter (residual and context thresholds, scales, attention thresholds)
#: on the wire (int32, little-endian); the device saturates it into ``PARAM_BITS`` signed bits,
#: which holds every value the spec allows (residual thresholds lie in [-32768, 32768]).
PARAM_BYTES = 4
PARAM_BITS = 17
#: Largest frame payload data a device may stage (the frame's length field is 16 bits and the
#: command arguments take up to 32 bytes).
MAX_FRAME_BYTES = 0xFFFF - 32
#: Largest KV cache capacity (context sums are compared with int16 thresholds).
MAX_KV_CAPACITY = 32766


def gemv_problem(k: int, *, lanes: int, cols: int, banks: int) -> str | None:
    """Why a GEMV unit reading ``banks`` words a line cannot take rows of ``k`` bits (None if
    it can): a row's ``ceil(k / lanes)`` words must be a power of two or a multiple of
    ``banks``, and at least ``banks / cols`` (a line holds at most ``cols`` rows)."""
    kw = -(-k // lanes)
    if kw & (kw - 1) and kw % banks:
        return (f"{kw} words per row is neither a power of two nor a multiple of the "
                f"{banks} weight banks")
    if kw * cols < banks:
        return f"{kw} words per row is fewer than weight_banks / cols = {banks // cols}"
    return None


@dataclass(frozen=True)
class LayerConfig:
    """The layer engine's parameters (``onebit.hdl.layer.engine``), checked at construction.

    The model width and heads are fixed by the build (the attention unit works on all heads and
    channels at once); the feed-forward width is given per command, up to ``max_ff``.

    Members
    -------
    d_model, heads : int
        D and H; D must be a multiple of the core's lanes.
    max_ff : int
        Largest F.
    kv_capacity : int
        Tokens the KV cache holds per slot.
    kv_slots : int
        Cache slots: one per layer of a model that runs on the device.
    res_words : int
        Residual store size in words of ``cols`` int16 values (a row of D is ``D / cols``).
    param_words : int
        Parameter store size in words of ``cols`` values of ``PARAM_BITS`` bits.
    max_bits, weight_kinds : int, tuple of str
        The precisions the engine computes (reported by IDENTIFY): the largest activation bits
        A (1..4; each LAYER command picks its own A up to it) and the weight kinds:
        ``("binary",)`` or ``("binary", "ternary")`` (ternary needs ``max_bits >= 2``). With
        ``max_bits > 1`` (``multi_threshold``) it quantises through multi-threshold units whose
        thresholds live in the parameter store (``onebit.host.layer_layout``), and the core
        must take rows of that many planes (``CoreConfig.max_bits``, ``max_k``); with ternary
        weights, rows twice as long (a ternary row is its two planes side by side).
    """

    d_model: int = 64
    heads: int = 2
    max_ff: int = 256
    kv_capacity: int = 64
    kv_slots: int = 2
    res_words: int = 1024
    param_words: int = 512
    max_bits: int = 1
    weight_kinds: tuple = ("binary",)

    def __post_init__(self) -> None:
        check_count("Model width", self.d_model)
        check_count("Head count", self.heads)
        check_count("Maximum feed-forward width", self.max_ff)
        check_count("KV cache capacity", self.kv_capacity)
        check_count("KV cache slots", self.kv_slots)
        check_count("Residual store size", self.res_words)
        check_count("Parameter store size", self.param_words)
        if self.d_model % self.heads:
            raise ValueError(f"Model width {self.d_model} is not a multiple of the head count "
                             f"{self.heads}")
        if (isinstance(self.max_bits, bool) or not isinstance(self.max_bits, int)
                or not 1 <= self.max_bits <= 4):
            raise ValueError(f"The layer engine's activation bits max_bits must be an integer "
                             f"from 1 to 4, not {self.max_bits!r}")
        if not isinstance(self.weight_kinds, (tuple, list)) or \
                tuple(self.weight_kinds) not in (("binary",), ("binary", "ternary")):
            raise ValueError(f"The layer engine computes binary or binary and ternary weights: "
                             f"weight_kinds must be ('binary',) or ('binary', 'ternary'), not "
                             f"{self.weight_kinds!r}")
        object.__setattr__(self, "weight_kinds", tuple(self.weight_kinds))
        if self.ternary and self.max_bits < 2:
            raise ValueError("Ternary weights run on the multi-bit engine: max_bits must be at "
                             "least 2 with weight_kinds ('binary', 'ternary'), not 1")
        levels = (1 << self.max_bits) - 1
        if levels * self.kv_capacity > MAX_KV_CAPACITY:
            raise ValueError(f"KV cache capacity must be at most {MAX_KV_CAPACITY // levels} "
                             f"at max_bits = {self.max_bits} (context sums, up to "
                             f"{levels} x the capacity, are compared with 16-bit thresholds), "
                             f"not {self.kv_capacity}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def ternary(self) -> bool:
        """Whether the engine computes ternary weights."""
        return "ternary" in self.weight_kinds

    @property
    def multi_threshold(self) -> bool:
        """Whether the engine quantises through its multi-threshold unit (``max_bits > 1``,
        which ternary weights need too; ``onebit.host.layer_layout``)."""
        return self.max_bits > 1

    @property
    def row_copies(self) -> int:
        """Copies of an activation row that products read: 2 with ternary weights (a row
        against a weight row's two planes side by side), else 1."""
        return 2 if self.ternary else 1


@dataclass(frozen=True)
class DeviceConfig:
    """Parameters of the device behind the host link, checked at construction.

    Members
    -------
    core : CoreConfig
        The GEMM core. Its lanes must be a multiple of 8 (words travel as whole bytes) and its
        results and thresholds must fit 16 bits (``max_k <= 32766``).
    frame_bytes : int
        Data bytes one LOAD frame may carry (the staging buffer); a multiple of the word size.
    act_words, weight_words, thresh_words, result_beats : int
        Sizes of the stores.
    weight_store : str
        ``"bram"`` or ``"ice40_spram"`` for the weight store (SPRAM blocks side by side and deep, at
        most four with the core's own).
    weight_banks : int
        Block RAM banks the weight store is split into (a power of two; word ``a`` in bank
        ``a mod weight_banks``). With more than one, the layer engine decodes single tokens with
        the GEMV unit, which reads a line of ``weight_banks`` words a cycle
        (``onebit.hdl.core.gemv``), and the threshold store is split into ``cols`` banks.
    layer : LayerConfig or None
        The layer engine (``LAYER`` and ``HEAD`` commands); ``None`` builds a GEMM-only device.
        Its sizes must fit the core and the activation store (``onebit.host.layer_layout``).
    """

    core: CoreConfig = field(default_factory=CoreConfig)
    frame_bytes: int = 1024
    act_words: int = 2048
    weight_words: int = 8192
    thresh_words: int = 1024
    result_beats: int = 1024
    weight_store: str = "bram"
    weight_banks: int = 1
    layer: LayerConfig | None = None

    def __post_init__(self) -> None:
        c = self.core
        if not isinstance(c, CoreConfig):
            raise TypeError(f"core must be a CoreConfig, not {c!r}")
        if c.lanes % 8:
            raise ValueError(f"The host link moves whole bytes: lanes must be a multiple of 8, "
                             f"not {c.lanes}")
        if max(c.result_width, c.threshold_width) > 16:
            raise ValueError(f"Results and thresholds travel as 16-bit integers: the largest "
                             f"result (2^A - 1) * max_k_at(A) must be at most 32766, not "
                             f"{c.result_bound} (max_k {c.max_k}, max_bits {c.max_bits})")
        # A LOAD frame carries whole words and whole thresholds.
        unit = math.lcm(self.word_bytes, THRESHOLD_BYTES)
        check_count("Frame data size", self.frame_bytes, unit)
        if self.frame_bytes > MAX_FRAME_BYTES or self.frame_bytes % unit:
            raise ValueError(f"Frame data size must be a multiple of {unit} bytes (whole "
                             f"words and thresholds) up to {MAX_FRAME_BYTES}, not "
                             f"{self.frame_bytes}")
        check_count("Activation store size", self.act_words, c.max_chunks)
        check_count("Weight store size", self.weight_words, c.max_chunks)
        check_count("Threshold store size", self.thresh_words)
        check_count("Result store size", self.result_beats)
        if self.weight_store not in MEMORY_KINDS:
            raise ValueError(f"Weight store must be one of {', '.join(MEMORY_KINDS)}, "
                             f"not {self.weight_store!r}")
        if self.weight_store == "ice40_spram":
            blocks = spram_blocks(c.lanes, self.weight_words) + c.spram_blocks
            if blocks > SPRAM_BLOCKS:
                raise ValueError(f"An SPRAM weight store of {self.weight_words} words of "
                                 f"{c.lanes} bits (plus the core's {c.spram_blocks}) needs "
                                 f"{blocks} SB_SPRAM256KA blocks; the iCE40 UP5K has "
                                 f"{SPRAM_BLOCKS}")
        check_count("Weight bank count", self.weight_banks)
        if self.weight_banks & (self.weight_banks - 1):
            raise ValueError(f"Weight bank count must be a power of two, not "
                             f"{self.weight_banks}")
        if self.weight_banks > 1:
            if self.weight_store != "bram":
                raise ValueError("A banked weight store needs block RAM, not "
                                 f"{self.weight_store!r}")
            if self.layer is None:
                raise ValueError("Weight banks serve the layer engine's decode: a device with "
                                 "weight_banks > 1 needs a layer (LayerConfig)")
        if self.layer is not None:
            self._check_layer()

    def _check_layer(self) -> None:
        from .layer_layout import act_regions, param_words_per_layer

        c, ly = self.core, self.layer
        if not isinstance(ly, LayerConfig):
            raise TypeError(f"layer must be a LayerConfig or None, not {ly!r}")
        unit = max(RESIDUAL_BYTES, PARAM_BYTES) * c.cols
        if self.frame_bytes % unit:
            raise ValueError(f"Frame data size must be a multiple of a parameter word "
                             f"({unit} bytes) on a device with a layer engine, not "
                             f"{self.frame_bytes}")
        if c.lanes % c.cols:
            raise ValueError(f"The layer engine packs results in groups of cols bits: lanes "
                             f"({c.lanes}) must be a multiple of cols ({c.cols})")
        if ly.d_model % c.lanes:
            raise ValueError(f"Model width {ly.d_model} must be a multiple of the lanes "
                             f"({c.lanes})")
        for what, need, top, name in (("3 x model width", 3 * ly.d_model, c.max_n, "max_n"),
                                      ("Maximum feed-forward width", ly.max_ff, c.max_n, "max_n"),
                                      ("Model width", ly.d_model, c.max_k, "max_k"),
                                      ("Maximum feed-forward width", ly.max_ff, c.max_k, "max_k")):
            if need > top:
                raise ValueError(f"{what} ({need}) exceeds the core's {name} ({top})")
        if ly.max_bits > c.max_bits:
            raise ValueError(f"The layer engine's max_bits ({ly.max_bits}) exceeds the core's "
                             f"({c.max_bits}): its products take rows of that many planes")
        k_at = c.max_k_at(ly.max_bits)
        need = ly.row_copies * -(-max(ly.d_model, ly.max_ff) // c.lanes) * c.lanes
        if need > k_at:
            raise ValueError(f"At max_bits = {ly.max_bits} the core takes rows of up to "
                             f"{k_at} elements (max_k_at); the layer needs {need} (D and "
                             f"max_ff{', twice: ternary rows' if ly.ternary else ''})")
        need = act_regions(self)["end"]
        if self.act_words < need:
            raise ValueError(f"The layer engine needs {need} activation words for max_t = "
                             f"{c.max_t}, D = {ly.d_model}, F = {ly.max_ff}; the store has "
                             f"{self.act_words}")
        if self.weight_banks > 1:
            why = self.gemv_problem(ly.d_model)
            if why:
                raise ValueError(f"Model width {ly.d_model}: {why}")
        if ly.res_words < c.max_t * ly.d_model // c.cols:
            raise ValueError(f"Residual store of {ly.res_words} words cannot hold max_t = "
                             f"{c.max_t} rows of {ly.d_model // c.cols} words")
        if ly.param_words < param_words_per_layer(self):
            raise ValueError(f"Parameter store of {ly.param_words} words cannot hold one "
                             f"layer's {param_words_per_layer(self)}")

    def reshaped(self, *, rows: int | None = None, cols: int | None = None,
                 lanes: int | None = None) -> DeviceConfig:
        """This device with another array shape (``None`` keeps a dimension): the core's
        ``reshaped``, and the stores counted in array-shaped words keep what they hold.

        - A banked weight store keeps its banks per element (``weight_banks`` scales with
          ``rows * cols``), so the GEMV unit still reads a line as wide as the array, or as
          many as the model width allows (``gemv_problem``).
        - The parameter and residual stores (words of ``cols`` values) keep their values: at
          twice the columns they have half the words, and no fewer than one layer (or
          ``max_t`` residual rows) needs.
        - The other stores keep their words.

        Raises ``ValueError`` (from the checks) where the new shape cannot hold the layer."""
        from .layer_layout import param_words_per_layer

        c = self.core
        core = c.reshaped(rows=rows, cols=cols, lanes=lanes)

        def scaled(n: int, old: int, new: int) -> int:
            return -(-n * old // new)

        banks = self.weight_banks
        if banks > 1:
            banks = max(1, banks * core.rows * core.cols // (c.rows * c.cols))
            banks = 1 << (banks.bit_length() - 1)           # (a power of two)
        ly = self.layer
        while banks > 1 and ly is not None and gemv_problem(
                ly.d_model, lanes=core.lanes, cols=core.cols, banks=banks):
            banks //= 2
        if ly is None:
            return replace(self, core=core, weight_banks=banks)
        res = max(scaled(ly.res_words, c.cols, core.cols), core.max_t * ly.d_model // core.cols)
        roomy = replace(self, core=core, weight_banks=banks,
                        layer=replace(ly, res_words=res, param_words=1 << 30))
        param = max(scaled(ly.param_words, c.cols, core.cols), param_words_per_layer(roomy))
        return replace(roomy, layer=replace(ly, res_words=res, param_words=param))

    def gemv_problem(self, k: int) -> str | None:
        """Why this device's GEMV unit cannot take rows of ``k`` bits (None if it can)."""
        return gemv_problem(k, lanes=self.core.lanes, cols=self.core.cols,
                            banks=self.weight_banks)

    @property
    def thresh_banks(self) -> int:
        """Banks of the threshold store: ``cols`` with a banked weight store, else 1."""
        return self.core.cols if self.weight_banks > 1 else 1

    @property
    def word_bytes(self) -> int:
        """Bytes of one activation or weight word (``lanes / 8``)."""
        return self.core.lanes // 8

    @property
    def tile_bytes(self) -> int:
        """Bytes of a thresholded result beat: ``rows x cols`` bits, rounded up to bytes."""
        return -(-self.core.rows * self.core.cols // 8)

    def result_beat_bytes(self, thresholded: bool) -> int:
        """Bytes of one result beat on the wire: ``cols`` 16-bit integers, or one tile of bits."""
        return self.tile_bytes if thresholded else self.core.cols * RESULT_INT_BYTES

    @property
    def result_word_bits(self) -> int:
        """Width of a result store word: the larger of the two beat kinds."""
        return 8 * max(self.result_beat_bytes(True), self.result_beat_bytes(False))

    def result_beats_for(self, t: int, n: int, thresholded: bool) -> int:
        """Result beats a RUN of T tokens and N outputs writes."""
        tiles = -(-n // self.core.cols)
        return tiles * (-(-t // self.core.rows) if thresholded else t)
