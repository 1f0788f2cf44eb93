"""The whole device's parameters: the GEMM core plus the on-chip stores the host link fills.

Plain Python (the host imports it without Amaranth; ``onebit.hdl.device`` builds from it). The
host learns a device's ``DeviceConfig`` from IDENTIFY and tiles its work to fit.

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

from dataclasses import dataclass, field

from .core_config import MEMORY_KINDS, SPRAM_BLOCKS, CoreConfig, spram_blocks

__all__ = ["DeviceConfig", "THRESHOLD_BYTES", "RESULT_INT_BYTES"]

#: Bytes of one threshold on the wire (little-endian two's complement).
THRESHOLD_BYTES = 2
#: Bytes of one integer result on the wire (little-endian two's complement).
RESULT_INT_BYTES = 2
#: Largest frame payload data a device may stage (the frame's length field is 16 bits and the
#: command arguments take up to 32 bytes).
MAX_FRAME_BYTES = 0xFFFF - 32


def _count(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer of at least {low}, not {value!r}")
    return value


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
    """

    core: CoreConfig = field(default_factory=CoreConfig)
    frame_bytes: int = 1024
    act_words: int = 2048
    weight_words: int = 8192
    thresh_words: int = 1024
    result_beats: int = 1024
    weight_store: str = "bram"

    def __post_init__(self) -> None:
        c = self.core
        if not isinstance(c, CoreConfig):
            raise TypeError(f"core must be a CoreConfig, not {c!r}")
        if c.lanes % 8:
            raise ValueError(f"The host link moves whole bytes: lanes must be a multiple of 8, "
                             f"not {c.lanes}")
        if max(c.result_width, c.threshold_width) > 16:
            raise ValueError(f"Results and thresholds travel as 16-bit integers: max_k must be "
                             f"at most 32766, not {c.max_k}")
        _count("Frame data size", self.frame_bytes, self.word_bytes)
        if self.frame_bytes > MAX_FRAME_BYTES or self.frame_bytes % self.word_bytes:
            raise ValueError(f"Frame data size must be a multiple of {self.word_bytes} bytes "
                             f"up to {MAX_FRAME_BYTES}, not {self.frame_bytes}")
        _count("Activation store size", self.act_words, c.max_chunks)
        _count("Weight store size", self.weight_words, c.max_chunks)
        _count("Threshold store size", self.thresh_words)
        _count("Result store size", self.result_beats)
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
