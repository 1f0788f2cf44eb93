"""The host link's framing: one definition of frames, opcodes and status codes for both sides.

A frame, host to device or device to host::

    +------+--------+---------------+----------+-------------------+---------------+
    | 0xA5 | opcode | length (LE16) | hdr CRC8 | payload (length)  | CRC-32 (LE32) |
    +------+--------+---------------+----------+-------------------+---------------+

The header check is CRC-8/SMBUS (poly 0x07; ``amaranth.lib.crc.catalog.CRC8_SMBUS``) over
opcode and length, so a damaged length is caught at once instead of making the receiver wait
for a frame that never ends. The frame check is CRC-32/ISO-HDLC (``zlib.crc32``;
``CRC32_ISO_HDLC`` in gateware) over opcode, length and payload. A receiver hunts for the start
byte, so garbage between frames is skipped; a frame whose header or CRC does not match is
dropped and the hunt resumes one byte after its start byte. Plain Python (the gateware imports
these numbers from here).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from .core_config import CORE_COUNTERS

__all__ = [
    "START", "MAX_PAYLOAD", "HEADER_BYTES", "TRAILER_BYTES", "Opcode", "Status", "Frame",
    "FrameError", "encode_frame", "FrameDecoder", "crc32", "crc8", "PROTOCOL_VERSION",
    "encode_identify", "decode_identify", "ARGUMENTS", "args_size", "encode_args",
    "LINK_COUNTERS", "COUNTERS", "RUN_THRESHOLD", "RUN_BITS_SHIFT", "RUN_BITS_MASK",
    "run_flags", "LAYER_OPCODES", "LAYER_FRESH", "LAYER_HEAD",
    "LAYER_BITS_SHIFT", "LAYER_BITS_MASK", "LAYER_TERNARY", "RUN_ANSWER", "LAYER_ANSWER",
]

PROTOCOL_VERSION = 6
# magic, version, rows, cols, lanes, max K, max T, max N, core weight memory, weight store,
# frame data bytes, activation words, weight words, thresholds, result beats, weight banks,
# then the layer engine (all zero without one): D, H, max F, KV capacity, KV slots, residual
# words, parameter words, the largest activation bits and the weight kinds (bit 0 binary, bit 1
# ternary) it computes
_IDENTIFY = struct.Struct("<4sBHHHHHHBBHIIIIHBHHHHBIIBB")
#: Weight kinds in IDENTIFY's bit mask, bit i for kind i.
_KINDS = ("binary", "ternary")
_MAGIC = b"1BIT"

START = 0xA5
MAX_PAYLOAD = 0xFFFF
HEADER_BYTES = 5          # start, opcode, length, header CRC-8
TRAILER_BYTES = 4         # CRC-32


class Opcode(enum.IntEnum):
    """Commands (host to device); a response carries the same opcode with bit 7 set."""

    IDENTIFY = 0x01
    RESET = 0x02
    LOAD_WEIGHTS = 0x03
    LOAD_ACTIVATIONS = 0x04
    RUN = 0x05
    READ_RESULTS = 0x06
    READ_COUNTERS = 0x07
    LOAD_THRESHOLDS = 0x08
    LOAD_RESIDUAL = 0x09
    READ_RESIDUAL = 0x0A
    LOAD_PARAMS = 0x0B
    LAYER = 0x0C
    CLEAR_CACHE = 0x0D

    @property
    def response(self) -> int:
        """The opcode of this command's response."""
        return self | 0x80


class Status(enum.IntEnum):
    """First payload byte of every response: ``OK``; the frame failed its CRC; the opcode is
    not a command; the payload has the wrong size; a field or region is out of range; the frame
    stopped half-way (inter-byte timeout); the core rejected a checked command (a device fault);
    a LAYER would take the KV cache slot beyond its capacity (nothing was run).
    """

    OK = 0x00
    BAD_CRC = 0x01
    UNKNOWN_OPCODE = 0x02
    BAD_LENGTH = 0x03
    OUT_OF_RANGE = 0x04
    TIMED_OUT = 0x05
    FAULT = 0x06
    CACHE_FULL = 0x07


#: Each command's argument fields, ``(name, bytes)``, little-endian, at the start of its payload.
#: Every command begins with a ``tag`` that its response echoes (after the status byte), so the
#: host never mistakes a late answer to an earlier command for the answer to this one. A LOAD's
#: data follows its arguments; every other command's payload is exactly its arguments.
ARGUMENTS: dict[Opcode, tuple[tuple[str, int], ...]] = {
    Opcode.IDENTIFY: (("tag", 1),),
    Opcode.RESET: (("tag", 1),),
    Opcode.LOAD_WEIGHTS: (("tag", 1), ("offset", 4)),
    Opcode.LOAD_ACTIVATIONS: (("tag", 1), ("offset", 4)),
    Opcode.LOAD_THRESHOLDS: (("tag", 1), ("offset", 4)),
    Opcode.RUN: (("tag", 1), ("op", 1), ("flags", 1), ("t", 2), ("n", 2), ("k", 2),
                 ("act_base", 4), ("weight_base", 4), ("thresh_base", 4)),
    Opcode.READ_RESULTS: (("tag", 1), ("offset", 4), ("count", 2)),
    Opcode.READ_COUNTERS: (("tag", 1),),
    Opcode.LOAD_RESIDUAL: (("tag", 1), ("offset", 4)),
    Opcode.READ_RESIDUAL: (("tag", 1), ("offset", 4), ("count", 2)),
    Opcode.LOAD_PARAMS: (("tag", 1), ("offset", 4)),
    Opcode.LAYER: (("tag", 1), ("flags", 1), ("slot", 1), ("shift", 1), ("t", 2), ("f", 2),
                   ("n", 2), ("res_base", 4), ("w_base", 4), ("th_base", 4), ("p_base", 4)),
    Opcode.CLEAR_CACHE: (("tag", 1),),
}

#: Commands that only a device with a layer engine knows (others answer UNKNOWN_OPCODE).
LAYER_OPCODES = (Opcode.LOAD_RESIDUAL, Opcode.READ_RESIDUAL, Opcode.LOAD_PARAMS, Opcode.LAYER,
                 Opcode.CLEAR_CACHE)

#: LAYER's ``flags``: bit 0 empties the layer's KV cache slot first (a prefill from position 0;
#: without it the tokens continue the cached sequence: decode); bit 1 runs the LM head instead
#: of a layer: ``(X >= th_out) . Wout^T`` as integers into the result store (``n`` = V rows).
LAYER_FRESH = 0x01
LAYER_HEAD = 0x02
#: Bits 2-3 of LAYER's ``flags``: the activation bits A of the layer (or of the head) less one,
#: on an engine whose ``max_bits`` is at least A (else the command is OUT_OF_RANGE).
LAYER_BITS_SHIFT = 2
LAYER_BITS_MASK = 0x0C
#: Bit 4 of LAYER's ``flags``: the layer's (or the head's) weights are ternary, each row its two
#: planes side by side (on an engine whose ``weight_kinds`` has them).
LAYER_TERNARY = 0x10

#: The answer data of RUN and of LAYER: these fields as little-endian 32-bit words. RUN: the
#: result beats written and the core's busy cycles. LAYER: its cycles, the cycles the array
#: computed, and the number of tokens in its KV cache slot after it (the host checks it, so a
#: cache that a device reset emptied is noticed instead of decoding from position 0).
RUN_ANSWER = ("beats", "cycles")
LAYER_ANSWER = ("cycles", "active", "kv_length")

#: RUN's ``flags``: bit 0 asks for thresholded (bit) results; bits 1-2 hold the activation
#: bits less one (``A - 1``, on a core whose ``max_bits`` is at least A; XOR only): each
#: activation row is then A bit-planes, top plane first (``run_flags``).
RUN_THRESHOLD = 0x01
RUN_BITS_SHIFT = 1
RUN_BITS_MASK = 0x06


def run_flags(*, threshold: bool, bits: int = 1) -> int:
    """RUN's ``flags`` byte."""
    return (RUN_THRESHOLD if threshold else 0) | ((bits - 1) << RUN_BITS_SHIFT)

#: The link's own counters (32 bits each, cumulative since reset): cycles since reset, good
#: frames, frames failing their CRC, frames abandoned by the inter-byte timeout, headers
#: failing their check, error responses, cycles a response byte waited for the line, and
#: cycles spent executing commands.
LINK_COUNTERS = ("uptime", "frames", "bad_crc", "timeouts", "bad_header", "errors",
                 "tx_stall", "exec")
#: READ_COUNTERS answers these, in order, as little-endian 32-bit words: the core's counters
#: (of its last RUN) then the link's.
COUNTERS = tuple(f"core_{n}" for n in CORE_COUNTERS) + tuple(f"link_{n}" for n in LINK_COUNTERS)


def args_size(opcode: Opcode) -> int:
    """Bytes of a command's arguments."""
    return sum(size for _, size in ARGUMENTS[Opcode(opcode)])


def encode_args(opcode: Opcode, **fields: int) -> bytes:
    """Pack a command's arguments; raise :class:`FrameError` if a field is missing or does
    not fit."""
    spec = ARGUMENTS[Opcode(opcode)]
    names = {name for name, _ in spec}
    if set(fields) != names:
        raise FrameError(f"{Opcode(opcode).name} takes fields {sorted(names)}, "
                         f"not {sorted(fields)}")
    out = bytearray()
    for name, size in spec:
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int) or \
                not 0 <= value < 1 << (8 * size):
            raise FrameError(f"{Opcode(opcode).name} field {name} must fit {size} bytes, "
                             f"not {value!r}")
        out += value.to_bytes(size, "little")
    return bytes(out)


class FrameError(ValueError):
    """A frame cannot be built: a field does not fit."""


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC of ``data``."""
    return zlib.crc32(data) & 0xFFFF_FFFF


def _crc8_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0, no reflection) of ``data``."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    opcode: int
    payload: bytes


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """Return the bytes of a frame; raise :class:`FrameError` if a field does not fit."""
    if isinstance(opcode, bool) or not isinstance(opcode, int) or not 0 <= opcode <= 0xFF:
        raise FrameError(f"opcode must be an integer in 0..255, not {opcode!r}")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise FrameError(f"payload must be bytes, not {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the maximum of {MAX_PAYLOAD}")
    header = struct.pack("<BH", opcode, len(payload))
    body = header + payload
    return bytes([START]) + header + bytes([crc8(header)]) + payload + \
        struct.pack("<I", crc32(body))


class FrameDecoder:
    """Incremental decoder: feed bytes, collect good frames; count what was dropped and why.

    Bytes before a start byte are skipped (``garbage``). A frame whose header check fails
    (``bad_header``) or whose CRC fails (``bad_crc``) is dropped and the search resumes one byte
    after its start byte, so a start byte inside a damaged frame can still begin the next good
    one. A frame cut short holds the decoder until more bytes arrive; a reader that times out
    calls :meth:`resync` to give up on it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.garbage = 0
        self.bad_header = 0
        self.bad_crc = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data``; return the frames it completed, in order."""
        self._buf += data
        return self._scan()

    def resync(self) -> list[Frame]:
        """Give up on the frame in progress (after a timeout); return frames found after it."""
        if self._buf:
            self.garbage += 1
            del self._buf[:1]
        return self._scan()

    def _scan(self) -> list[Frame]:
        frames: list[Frame] = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                self.garbage += len(self._buf)
                self._buf.clear()
                return frames
            if start:
                self.garbage += start
                del self._buf[:start]
            if len(self._buf) < HEADER_BYTES:
                return frames
            header = bytes(self._buf[1:4])
            if crc8(header) != self._buf[4]:
                self.bad_header += 1
                self.garbage += 1
                del self._buf[:1]
                continue
            opcode, length = struct.unpack("<BH", header)
            total = HEADER_BYTES + length + TRAILER_BYTES
            if len(self._buf) < total:
                return frames
            payload = bytes(self._buf[HEADER_BYTES:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<I", self._buf, HEADER_BYTES + length)
            if crc == crc32(header + payload):
                frames.append(Frame(opcode, payload))
                del self._buf[:total]
            else:
                self.bad_crc += 1
                self.garbage += 1
                del self._buf[:1]

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)


def encode_identify(dev) -> bytes:
    """The IDENTIFY response data for a ``DeviceConfig``. The gateware builds its answer from
    this same function, so host and device cannot disagree."""
    from .core_config import MEMORY_KINDS

    c, ly = dev.core, dev.layer
    engine = (0,) * 9 if ly is None else (
        ly.d_model, ly.heads, ly.max_ff, ly.kv_capacity, ly.kv_slots, ly.res_words,
        ly.param_words, ly.max_bits, sum(1 << _KINDS.index(k) for k in ly.weight_kinds))
    return _IDENTIFY.pack(_MAGIC, PROTOCOL_VERSION, c.rows, c.cols, c.lanes, c.max_k,
                          c.max_t, c.max_n, MEMORY_KINDS.index(c.weight_memory),
                          MEMORY_KINDS.index(dev.weight_store), dev.frame_bytes,
                          dev.act_words, dev.weight_words, dev.thresh_words, dev.result_beats,
                          dev.weight_banks, c.max_bits, *engine)


def decode_identify(data: bytes):
    """Return the ``DeviceConfig`` an IDENTIFY response describes; ``ValueError`` if
    malformed."""
    from .core_config import MEMORY_KINDS, CoreConfig
    from .device_config import DeviceConfig, LayerConfig

    if len(data) != _IDENTIFY.size:
        raise ValueError(f"IDENTIFY data must be {_IDENTIFY.size} bytes, not {len(data)}")
    (magic, version, rows, cols, lanes, k, t, n, mem, store, frame, acts, weights, thresholds,
     results, banks, core_bits, *engine) = _IDENTIFY.unpack(data)
    if magic != _MAGIC:
        raise ValueError(f"not a onebit device: magic {magic!r}")
    if version != PROTOCOL_VERSION:
        raise ValueError(f"device speaks protocol version {version}, this host "
                         f"{PROTOCOL_VERSION}")
    if mem >= len(MEMORY_KINDS) or store >= len(MEMORY_KINDS):
        raise ValueError(f"unknown memory kind {max(mem, store)}")
    core = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=k, max_t=t, max_n=n,
                      weight_memory=MEMORY_KINDS[mem], max_bits=core_bits)
    layer = None
    if any(engine):
        d, h, f, cap, slots, res, par, bits, kinds = engine
        if kinds >> len(_KINDS):
            raise ValueError(f"unknown weight kinds in the mask {kinds:#x}")
        layer = LayerConfig(d_model=d, heads=h, max_ff=f, kv_capacity=cap, kv_slots=slots,
                            res_words=res, param_words=par, max_bits=bits,
                            weight_kinds=tuple(k for i, k in enumerate(_KINDS)
                                               if kinds >> i & 1))
    return DeviceConfig(core=core, frame_bytes=frame, act_words=acts, weight_words=weights,
                        thresh_words=thresholds, result_beats=results,
                        weight_store=MEMORY_KINDS[store], weight_banks=banks, layer=layer)
