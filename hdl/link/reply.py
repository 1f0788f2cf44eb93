"""A command's answer: header, status, tag and data, one byte a cycle at most.

``ReplySender`` starts when ``start`` is high and it is idle (the inputs are read from then until
``done``, so they must hold). It computes the answer frame's length (``length + 2`` when
``status`` is OK, else 2), offers the header ``{opcode | 0x80, length}`` on ``header``, then
on ``data`` the status byte, the tag and, when the status is OK, the data of ``kind``:

- ``IDENT``: the IDENTIFY table (``encode_identify(dev)``), from a ROM, a byte every other cycle;
- ``WORDS``: ``info`` (``words_sel`` low) or the core's and the link's counters (``words_sel``
  high, the link's read from the counter bank through ``bank_*``), as 32-bit little-endian
  words, ``length`` bytes in all;
- ``RESULTS``: result store words from ``offset`` on, each ``result_beat_bytes(stored_thr)``
  bytes; ``RESIDUAL``: residual store words, ``RESIDUAL_BYTES * cols`` bytes each.

A word is fetched (read latency: two cycles, four from the counter bank) before its bytes go
out, shifted down a byte a cycle. ``error`` pulses when the header of an answer whose status
is not OK is taken; ``done`` is high the cycle its last byte is taken.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.core_config import CORE_COUNTERS
from ...host.device_config import RESIDUAL_BYTES, DeviceConfig
from ...host.protocol import LAYER_ANSWER, LINK_COUNTERS, Status, encode_identify
from ..core.gemm_layouts import counters_layout
from ..lib.counter_bank import CounterBank
from ..lib.family import family
from .frame_tx import header_layout

__all__ = ["ReplySender", "Reply"]


class Reply(enum.Enum, shape=3):
    """What an answer carries after its status and tag."""
    NONE = 0
    IDENT = 1
    WORDS = 2
    RESULTS = 3
    RESIDUAL = 4


class ReplySender(wiring.Component):
    """Members
    -------
    start : In(1)
    status, opcode, tag : In(8);  kind : In(Reply);  length : In(16)
    offset : In(16);  stored_thr : In(1)
        The first store word a RESULTS or RESIDUAL answer reads; the result beats' kind.
    words_sel : In(1);  info : In(ArrayLayout(32, len(LAYER_ANSWER)))
    core_counters : In(counters_layout())
    header : Out(stream.Signature(header_layout()));  data : Out(stream.Signature(8))
    res_raddr, res_ren : Out;  res_rdata : In(result_word_bits)
    resid_raddr, resid_ren : Out;  resid_rdata : In(16 * cols)    (with the layer engine)
    bank_raddr, bank_ren : Out;  bank_rdata : In(32)
        The link counter bank's read port.
    error : Out(1);  done : Out(1)
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev)
        self._dev = dev
        self._identify = encode_identify(dev)
        ports = {
            "start": In(1), "status": In(8), "opcode": In(8), "tag": In(8), "kind": In(Reply),
            "length": In(16), "offset": In(16), "stored_thr": In(1), "words_sel": In(1),
            "info": In(data.ArrayLayout(32, len(LAYER_ANSWER))),
            "core_counters": In(counters_layout()),
            "header": Out(stream.Signature(header_layout())),
            "data": Out(stream.Signature(8)),
            "res_raddr": Out(range(dev.result_beats)), "res_ren": Out(1),
            "res_rdata": In(dev.result_word_bits),
            "bank_raddr": Out(range(len(LINK_COUNTERS))), "bank_ren": Out(1),
            "bank_rdata": In(32),
            "error": Out(1), "done": Out(1),
        }
        if dev.layer is not None:
            ports.update({"resid_raddr": Out(range(dev.layer.res_words)), "resid_ren": Out(1),
                          "resid_rdata": In(16 * dev.core.cols)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        layer = dev.layer is not None
        status, kind = self.status, self.kind
        ans_len = Signal(16)            # the answer frame's length: length + 2, or 2
        # The identify answer's bytes, a ROM read by ``bidx`` into a register. On iCE40 a block
        # RAM (no table lookup in logic cells: timing, and the UP5K's cells); elsewhere logic
        # (an ECP5 block RAM's output, 5.8 ns, would go straight into the answer's bytes).
        ice40 = family(platform) == "ice40"
        style = "block" if ice40 else "logic"
        m.submodules.ident_rom = ident_rom = memory.Memory(
            shape=8, depth=len(self._identify), init=list(self._identify),
            attrs={"rom_style": style, "ram_style": style})
        ident_rd = ident_rom.read_port()
        ident_byte, ident_on = ident_rd.data, Signal()
        # ``bidx`` is the table's last byte, registered (timing: IDENT decides on it; it is
        # current whenever ``ident_on`` is, a cycle after ``bidx`` moves at the latest).
        ident_last = Signal()
        info = [self.info[i] for i in range(len(LAYER_ANSWER))]
        core_words = [getattr(self.core_counters, n) for n in CORE_COUNTERS]
        word_src = Array(info + core_words)
        word = Signal(max(32, dev.result_word_bits))
        wsel = Signal(range(len(info) + len(core_words) + len(LINK_COUNTERS) + 1))
        bank_sel = Signal()             # the word comes from the counter bank
        bank_idx = Signal(range(len(LINK_COUNTERS)))
        word_pick = Signal(32)
        widx = Signal(16)
        bidx = Signal(range(max(len(self._identify), word.shape().width // 8) + 1))
        n_bytes = Signal(range(word.shape().width // 8 + 1))
        m.d.comb += ident_rd.addr.eq(bidx)
        m.d.sync += ident_last.eq(bidx == len(self._identify) - 1)
        bpb = Mux(self.stored_thr, dev.result_beat_bytes(True), dev.result_beat_bytes(False))
        resid_bytes = RESIDUAL_BYTES * c.cols
        left = Signal(16)               # answer bytes still to send (a down-counter: timing)
        # left == 1 and bidx == n_bytes - 1, as registers (timing: BYTES decides on them).
        left_one, byte_last = Signal(), Signal()

        # The stores' read data, registered (timing: a block RAM's output is slow; not on
        # iCE40, whose UP5K has no logic cells to spare). FETCH reads, the data shows in HOLD
        # and holds; it is in these registers by LATCH.
        def read_word(rdata):
            if ice40:
                return rdata
            word = Signal.like(rdata, reset_less=True)
            m.d.sync += word.eq(rdata)
            return word

        res_word = read_word(self.res_rdata)
        if layer:
            resid_word = read_word(self.resid_rdata)

        # The answer's length into a register (timing: the status compare and an adder went
        # on into the sender's length registers), while ``start`` is high (its inputs hold).
        # Whether data follows the tag, likewise (timing: TAG's ``done`` went through the
        # status compare, ``kind`` and a 16-bit compare into the processor's state).
        has_data = Signal()
        with m.If(self.start):
            m.d.sync += [
                ans_len.eq(Mux(status == Status.OK, self.length, 0) + 2),
                has_data.eq((status == Status.OK) &
                            ((kind == Reply.IDENT) |
                             (((kind == Reply.WORDS) | (kind == Reply.RESULTS) |
                               (kind == Reply.RESIDUAL)) & (self.length != 0)))),
            ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.header.valid.eq(1),
                             self.header.payload.opcode.eq(self.opcode | 0x80),
                             self.header.payload.length.eq(ans_len)]
                with m.If(self.header.ready):
                    with m.If(status != Status.OK):
                        m.d.comb += self.error.eq(1)
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(status)]
                with m.If(self.data.ready):
                    m.next = "TAG"
            with m.State("TAG"):
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(self.tag)]
                with m.If(self.data.ready):
                    m.d.sync += [bidx.eq(0), widx.eq(0), left.eq(self.length),
                                 left_one.eq(self.length == 1),
                                 wsel.eq(Mux(self.words_sel, len(info), 0)),
                                 bank_sel.eq(0), bank_idx.eq(0), ident_on.eq(0)]
                    # (A read of no words answers no data.)
                    m.d.comb += self.done.eq(~has_data)
                    m.next = "IDLE"
                    with m.If(has_data & (kind == Reply.IDENT)):
                        m.next = "IDENT"
                    with m.Elif(has_data):
                        m.next = "FETCH"
            with m.State("IDENT"):
                # ``ident_byte`` (the ROM's read) holds table byte ``bidx`` from the cycle
                # after ``bidx`` moves; a byte goes out every other cycle (timing: no table
                # lookup in front of the answer's register slice).
                m.d.sync += ident_on.eq(1)
                m.d.comb += [self.data.valid.eq(ident_on), self.data.payload.eq(ident_byte)]
                with m.If(ident_on & self.data.ready):
                    m.d.sync += [bidx.eq(bidx + 1), ident_on.eq(0)]
                    with m.If(ident_last):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
            with m.State("FETCH"):
                m.d.comb += [self.res_raddr.eq(self.offset + widx), self.res_ren.eq(1)]
                if layer:
                    m.d.comb += [self.resid_raddr.eq(self.offset + widx), self.resid_ren.eq(1)]
                m.d.comb += [self.bank_raddr.eq(bank_idx), self.bank_ren.eq(bank_sel)]
                m.d.sync += word_pick.eq(word_src[wsel])
                m.next = "HOLD"
            # The counter bank answers ``CounterBank.LATENCY`` cycles after the read (FETCH),
            # in LATCH after the bank's hold states; the stores' data holds from HOLD on.
            bank_holds = [f"HOLD_BANK_{i}" for i in range(CounterBank.LATENCY - 2)]
            with m.State("HOLD"):
                m.next = "LATCH"
                if bank_holds:
                    with m.If(bank_sel):
                        m.next = bank_holds[0]
            for state, following in zip(bank_holds, bank_holds[1:] + ["LATCH"], strict=True):
                with m.State(state):
                    m.next = following
            with m.State("LATCH"):
                m.d.sync += [word.eq(Mux(kind == Reply.RESULTS, res_word,
                                         Mux(bank_sel, self.bank_rdata, word_pick))),
                             n_bytes.eq(Mux(kind == Reply.RESULTS, bpb, 4)), bidx.eq(0),
                             byte_last.eq((kind == Reply.RESULTS) & (bpb == 1))]
                if layer:
                    with m.If(kind == Reply.RESIDUAL):
                        m.d.sync += [word.eq(resid_word), n_bytes.eq(resid_bytes),
                                     byte_last.eq(resid_bytes == 1)]
                m.next = "BYTES"
            with m.State("BYTES"):
                # The word shifts down a byte as each goes out (timing: no byte multiplexer).
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(word[:8])]
                with m.If(self.data.ready):
                    m.d.sync += [word.eq(word >> 8),
                                 bidx.eq(bidx + 1), left.eq(left - 1), left_one.eq(left == 2),
                                 byte_last.eq(bidx + 2 == n_bytes)]
                    with m.If(left_one):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif(byte_last):
                        m.d.sync += [widx.eq(widx + 1), wsel.eq(wsel + 1)]
                        with m.If(wsel == len(info) + len(core_words) - 1):
                            m.d.sync += bank_sel.eq(1)
                        with m.If(bank_sel):
                            m.d.sync += bank_idx.eq(bank_idx + 1)
                        m.next = "FETCH"
        return m
