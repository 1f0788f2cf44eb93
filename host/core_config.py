"""The compute core's parameters, operations and chunk packing: one definition for both sides.

Plain Python and NumPy, so the host imports it without Amaranth; the gateware builds its ports and
layouts from it (``onebit.hdl.core.gemm``). A GEMM streams its operands as *chunks* of ``lanes``
bits: chunk ``j`` of a row holds elements ``j * lanes`` to ``j * lanes + lanes - 1``, element
``k`` at bit ``k % lanes``, the same little-endian order as the spec's 32-bit words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import numpy as np

from .checks import check_count
from .packing import check_bits

__all__ = ["Op", "CoreConfig", "to_chunks", "MEMORY_KINDS", "SPRAM_DEPTH", "SPRAM_WIDTH",
           "SPRAM_BLOCKS", "spram_blocks", "TABLE_LANES",
           "CORE_COUNTERS"]

#: Where the weight buffer lives: inferred block RAM, or iCE40 UP5K SPRAM (SB_SPRAM256KA).
MEMORY_KINDS = ("bram", "ice40_spram")
#: Geometry of one iCE40 SPRAM block.
SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16
SPRAM_BLOCKS = 4        # SB_SPRAM256KA blocks on the iCE40 UP5K


#: Lanes one count table covers: their 2 x 5 operand bits address a 1024-word ROM of
#: popcounts (an iCE40 EBR in its 1024 x 4 mode).
TABLE_LANES = 5


def spram_blocks(width: int, depth: int) -> int:
    """SB_SPRAM256KA blocks (16384 x 16 bits) that a ``width`` x ``depth`` memory needs."""
    return -(-width // SPRAM_WIDTH) * -(-depth // SPRAM_DEPTH)
#: The core's performance counters (32 bits each, cleared when a command starts): cycles busy,
#: computing, stalled by the result drain, waiting for a weight tile, held by the result sink.
CORE_COUNTERS = ("busy", "active", "stall", "weight_wait", "backpressure")


class Op(enum.IntEnum):
    """What each lane computes before the popcount.

    ``XOR``: the binary dot product, ``dot = K - 2 * popcount(x XOR w)`` (equal to the spec's
    ``2 * popcount(XNOR) - K`` on the K valid bits). ``AND``: the mask-times-binary product,
    ``mdot = 2 * popcount(p AND w) - popcount(p)``.
    """

    XOR = 0
    AND = 1


@dataclass(frozen=True)
class CoreConfig:
    """Parameters of the GEMM core, checked at construction.

    Members
    -------
    rows : int
        Array rows R: tokens computed at once.
    cols : int
        Array columns C: output channels computed at once.
    lanes : int
        Lanes L per processing element: bits of K per cycle; a power of two.
    max_k, max_t, max_n : int
        Largest K (bits per row), T (tokens held in the activation buffer) and N (outputs) a
        command may ask for. They size the buffers and counters: each weight bank holds
        ``2 * ceil(max_k / lanes)`` words (two halves, ping-pong).
    weight_memory : str
        ``"bram"`` (EBR on iCE40 and ECP5) or ``"ice40_spram"``: each half of each column's
        weight bank is its own set of ``ceil(lanes / 16)`` SB_SPRAM256KA blocks, so a tile loads
        into one half while the other is read (``2 * cols * ceil(lanes / 16)`` blocks in all).
    max_bits : int
        Largest activation width A (1..4) of an XOR product: a row of A-bit levels travels as
        its A bit-planes (top plane first), ``A * ceil(K / lanes)`` chunks, and the core sums
        the planes' products with their weights ``2^i`` in the accumulators
        (``prod = L K - 2 sum_i 2^i popcount(p_i XOR w)``, ``L = 2^A - 1``). 1 builds the
        one-bit core (no plane logic at all).
    count_tables : int
        Block RAM tables in each element, each counting ``TABLE_LANES`` (5) of its lanes, where
        the element counts with a tree (iCE40, simulation; not ECP5's carry chains): a table
        is a 1024-word ROM of popcounts read in the element's first stage, one iCE40 EBR and
        about 7.5 LUT4 fewer (``docs/core.md``). Needs ``lanes >= 16`` (the
        two-stage element). An implementation choice that changes no result: not part of
        IDENTIFY, and not compared.
    """

    rows: int = 4
    cols: int = 4
    lanes: int = 32
    max_k: int = 2048
    max_t: int = 64
    max_n: int = 4096
    weight_memory: str = "bram"
    max_bits: int = 1
    count_tables: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        check_count("Row count", self.rows)
        check_count("Column count", self.cols)
        check_count("Lane count", self.lanes)
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"Lane count must be a power of two, not {self.lanes}")
        if self.lanes > 1024:
            raise ValueError(f"Lane count must be at most 1024, not {self.lanes}")
        if self.rows * self.cols > 4096:
            raise ValueError(f"Array of {self.rows} x {self.cols} has more than 4096 elements")
        check_count("Maximum K", self.max_k)
        check_count("Maximum T", self.max_t)
        check_count("Maximum N", self.max_n)
        if self.weight_memory not in MEMORY_KINDS:
            raise ValueError(f"Weight memory must be one of {', '.join(MEMORY_KINDS)}, "
                             f"not {self.weight_memory!r}")
        if (isinstance(self.max_bits, bool) or not isinstance(self.max_bits, int)
                or not 1 <= self.max_bits <= 4):
            raise ValueError(f"Maximum activation bits must be 1, 2, 3 or 4, not "
                             f"{self.max_bits!r}")
        if (isinstance(self.count_tables, bool) or not isinstance(self.count_tables, int)
                or self.count_tables < 0):
            raise ValueError(f"Count tables must be a non-negative integer, not "
                             f"{self.count_tables!r}")
        if self.count_tables and self.lanes < 16:
            raise ValueError(f"Count tables need elements of at least 16 lanes (two stages), "
                             f"not {self.lanes}")
        if TABLE_LANES * self.count_tables > self.lanes:
            raise ValueError(f"{self.count_tables} count tables of {TABLE_LANES} lanes need "
                             f"{TABLE_LANES * self.count_tables} lanes; an element has "
                             f"{self.lanes}")
        if self.weight_memory == "ice40_spram" and self.max_chunks > SPRAM_DEPTH:
            raise ValueError(f"An SPRAM weight bank holds {SPRAM_DEPTH} chunks of a row, but "
                             f"max_k = {self.max_k} needs {self.max_chunks}")

    def reshaped(self, *, rows: int | None = None, cols: int | None = None,
                 lanes: int | None = None) -> CoreConfig:
        """This core with another array shape (``None`` keeps a dimension). The count tables
        keep their block RAM budget: the new elements share this core's tables in all
        (``rows * cols * count_tables``), at most ``lanes // TABLE_LANES`` an element, none
        below 16 lanes."""
        changes = {k: v for k, v in (("rows", rows), ("cols", cols), ("lanes", lanes))
                   if v is not None}
        shaped = replace(self, **changes, count_tables=0)       # (checks the new shape)
        if not self.count_tables or shaped.lanes < 16:
            return shaped
        budget = self.rows * self.cols * self.count_tables
        return replace(shaped, count_tables=min(budget // (shaped.rows * shaped.cols),
                                                shaped.lanes // TABLE_LANES))

    @property
    def lane_bits(self) -> int:
        """log2(lanes)."""
        return self.lanes.bit_length() - 1

    @property
    def max_chunks(self) -> int:
        """Chunks in the longest row: ceil(max_k / lanes)."""
        return -(-self.max_k // self.lanes)

    @property
    def pe_stages(self) -> int:
        """Register stages in each processing element before its accumulator (its latency):
        2 from 16 lanes up, whose count is then cut in two for Fmax, else 1."""
        return 2 if self.lanes >= 16 else 1

    @property
    def acc_width(self) -> int:
        """Accumulator width: holds every plane's count with its weight for the longest row
        at each A, ``max_A (2^A - 1) * (max_chunks div A) * lanes``
        (``max_chunks * lanes`` for a one-bit core), so it cannot overflow by construction."""
        return max(((1 << a) - 1) * (self.max_chunks // a) * self.lanes
                   for a in range(1, self.max_bits + 1)).bit_length()

    @property
    def result_bound(self) -> int:
        """Largest magnitude of a result: ``max_A (2^A - 1) * max_k_at(A)`` (``max_k`` for a
        one-bit core)."""
        return max(((1 << a) - 1) * self.max_k_at(a) for a in range(1, self.max_bits + 1))

    @property
    def result_width(self) -> int:
        """Signed width of a result, which lies in [-result_bound, result_bound]."""
        return self.result_bound.bit_length() + 1

    @property
    def threshold_width(self) -> int:
        """Signed width of a threshold in [-(result_bound + 1), result_bound + 1] (beyond
        that, clamp)."""
        return (self.result_bound + 1).bit_length() + 1

    def max_k_at(self, bits: int) -> int:
        """The largest K of a product with ``bits``-bit activations: its row of ``bits``
        planes must fit ``max_chunks``."""
        return min(self.max_k, (self.max_chunks // bits) * self.lanes)

    def row_chunks(self, k: int, bits: int = 1) -> int:
        """Chunks of one activation row of ``bits``-bit levels over K: its planes' chunks."""
        return bits * -(-k // self.lanes)

    @property
    def act_depth(self) -> int:
        """Words in each of the ``rows`` activation banks."""
        return -(-self.max_t // self.rows) * self.max_chunks

    @property
    def spram_blocks(self) -> int:
        """SB_SPRAM256KA blocks the weight buffer uses (0 unless ``weight_memory`` is SPRAM)."""
        if self.weight_memory != "ice40_spram":
            return 0
        return 2 * self.cols * -(-self.lanes // SPRAM_WIDTH)

    @property
    def peak_ops_per_cycle(self) -> int:
        """Binary operations per cycle: 2 (XNOR and add) per lane."""
        return 2 * self.rows * self.cols * self.lanes

    def ideal_cycles(self, t: int, n: int, k: int) -> float:
        """Cycles the work of a (T x K) . (N x K)^T product takes at the array's peak."""
        return t * n * k / (self.rows * self.cols * self.lanes)

    def check_command(self, t: int, n: int, k: int, bits: int = 1) -> None:
        """Raise ``ValueError`` if a GEMM of these sizes (activations of ``bits`` bits) does
        not fit this core."""
        for name, value, top in (("T", t, self.max_t), ("N", n, self.max_n),
                                 ("K", k, self.max_k), ("Activation bits", bits,
                                                        self.max_bits)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not 1 <= value <= top:
                raise ValueError(f"{name} must be in 1..{top} for this core, not {value}")
        if self.row_chunks(k, bits) > self.max_chunks:
            raise ValueError(f"K = {k} at {bits} bits is {self.row_chunks(k, bits)} chunks a "
                             f"row ({bits} planes); this core holds {self.max_chunks}")

    def clamp_thresholds(self, t: np.ndarray) -> np.ndarray:
        """Clamp thresholds into the core's field; results lie in [-result_bound,
        result_bound], so a threshold beyond that range plus one gives the same bits as the
        clamped one."""
        b = self.result_bound
        return np.clip(np.asarray(t, dtype=np.int64), -(b + 1), b + 1)


def to_chunks(bits: np.ndarray, lanes: int, *, name: str = "bits") -> list[list[int]]:
    """Split each row of ``{0,1}`` bits (M, K) into ``ceil(K / lanes)`` integers of ``lanes`` bits.

    Element ``k`` of a row is bit ``k % lanes`` of chunk ``k // lanes``; padding bits are zero.
    """
    arr = check_bits(name, bits)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, K), not shape {arr.shape}")
    m, k = arr.shape
    n_chunks = -(-k // lanes)
    padded = np.zeros((m, n_chunks * lanes), np.uint8)
    padded[:, :k] = arr
    weights = [1 << i for i in range(lanes)]
    rows = padded.reshape(m, n_chunks, lanes)
    if lanes <= 62:
        vals = (rows.astype(np.int64) * np.asarray(weights, np.int64)).sum(axis=-1)
        return vals.tolist()
    return [[int(sum(w for w, b in zip(weights, chunk, strict=True) if b)) for chunk in row]
            for row in rows]
