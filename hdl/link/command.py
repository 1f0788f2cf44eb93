"""The command processor: checked frames in, store writes and GEMM runs, one response out each.

Input: the events of ``FrameReceiver``. A frame's first bytes fill the argument register (the
fields of ``onebit.host.protocol.ARGUMENTS``); a LOAD's data bytes go to a staging buffer of
``frame_bytes``. Nothing is acted on before the frame's END says its CRC matched, so a damaged,
truncated or abandoned frame writes nothing. Then, in order:

1. Check: the opcode is known (else ``UNKNOWN_OPCODE``), the length fits the command
   (``BAD_LENGTH``), every field and region lies in range (``OUT_OF_RANGE``; the argument
   register keeps only the bits a field can use in range, and a set bit beyond them makes the
   command out of range). A RUN's regions are sized by a loop of at most
   ``max(T, N) + ceil(N / cols)`` cycles and checked a cycle later.
2. Execute: a LOAD copies the staged bytes into the store (one byte a cycle; thresholds
   saturate into the core's field, which gives the same bits); a RUN starts ``GemmRunner`` and
   waits for it; RESET clears the results and the link counters.
3. Answer: header ``opcode | 0x80``, then the status byte, the command's tag, and the data
   (IDENTIFY: ``encode_identify``; RUN: beats written and core busy cycles; LAYER: its cycles,
   the array's active cycles and the KV cache slot's length after it; READ_RESULTS: the
   beats' bytes; READ_COUNTERS: ``COUNTERS`` as 32-bit words), all little-endian.

Events are not taken while a command executes or its answer is sent (one command in flight).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.core_config import CORE_COUNTERS, Op
from ...host.device_config import (
    PARAM_BITS,
    RESIDUAL_BYTES,
    DeviceConfig,
)
from ...host.loads import loads
from ...host.protocol import (
    ARGUMENTS,
    LAYER_ANSWER,
    LAYER_HEAD,
    LAYER_OPCODES,
    LINK_COUNTERS,
    RUN_ANSWER,
    RUN_THRESHOLD,
    Opcode,
    Status,
    args_size,
    encode_identify,
)
from ..core.gemm_runner import run_layout
from ..lib.counter_bank import CounterBank
from ..lib.family import family
from .datapath import datapath_signature
from .frame_rx import EventKind, event_layout
from .frame_tx import header_layout

__all__ = ["CommandProcessor"]

_ARGS_BYTES = max(args_size(op) for op in ARGUMENTS)


def _args_layout(opcode: Opcode) -> data.StructLayout:
    return data.StructLayout({name: 8 * size for name, size in ARGUMENTS[opcode]})


class _Reply(enum.Enum, shape=3):
    NONE = 0
    IDENT = 1
    WORDS = 2
    RESULTS = 3
    RESIDUAL = 4


def _opcodes(dev: DeviceConfig) -> list[Opcode]:
    """The commands this device knows."""
    return [op for op in ARGUMENTS if dev.layer is not None or op not in LAYER_OPCODES]


def _field_bits(dev: DeviceConfig, op: Opcode, name: str, size: int) -> int:
    """Low bits of argument ``name`` that can be set in a command the device accepts: a value
    with a higher bit set is out of range (LAYER's fields go to the layer engine whole)."""
    c = dev.core
    depths = {load: depth for load, _, _, depth in loads(dev)}
    if op in depths and name == "offset":
        return depths[op].bit_length()
    if op == Opcode.RUN:
        return {"tag": 8, "op": max(Op).bit_length(), "flags": RUN_THRESHOLD.bit_length(),
                "t": c.max_t.bit_length(), "n": c.max_n.bit_length(),
                "k": c.max_k.bit_length(), "act_base": dev.act_words.bit_length(),
                "weight_base": dev.weight_words.bit_length(),
                "thresh_base": dev.thresh_words.bit_length()}[name]
    if op == Opcode.READ_RESULTS and name in ("offset", "count"):
        return dev.result_beats.bit_length()
    if op == Opcode.READ_RESIDUAL and name in ("offset", "count"):
        return dev.layer.res_words.bit_length()
    return 8 * size


def _kept_bits(dev: DeviceConfig) -> list[int]:
    """For each byte of the argument register, how many of its low bits some command of
    ``dev`` can use in range (the rest are never stored: a set one only marks the command out
    of range)."""
    kept = [0] * _ARGS_BYTES
    for op in _opcodes(dev):
        for name, field in _args_layout(op):
            bits = _field_bits(dev, op, name, field.width // 8)
            for b in range(field.width // 8):
                at = field.offset // 8 + b
                kept[at] = max(kept[at], min(8, max(0, bits - 8 * b)))
    return kept


def _run_thresh_bytes() -> range:
    """The argument bytes of RUN's ``thresh_base`` (only checked when RUN thresholds)."""
    field = _args_layout(Opcode.RUN)["thresh_base"]
    return range(field.offset // 8, (field.offset + field.width) // 8)


def _sat_flags(value, bits: int):
    """Whether ``value`` is above and below the range of ``bits`` signed bits."""
    top = (1 << (bits - 1)) - 1
    return value > top, value < -top - 1


def _saturated(value, bits: int, hi, lo):
    """``value`` saturated to ``bits`` signed bits, given its ``_sat_flags`` ``hi``, ``lo``."""
    top = (1 << (bits - 1)) - 1
    return Mux(hi, top, Mux(lo, -top - 1, value))[:bits]


class CommandProcessor(wiring.Component):
    """Members
    -------
    events : In(stream.Signature(event_layout()))
    header : Out(stream.Signature(header_layout()));  data : Out(stream.Signature(8))
    bad_header, tx_stall : In(1)
        Pulses counted by the link counters.
    The datapath's ports, ``datapath_signature(dev).flip()``: the store write port ``st_*``
    and one write enable per store (registered outputs), the result and residual stores' read
    ports, ``run_*`` and ``layer_*`` (see ``onebit.hdl.link.datapath``).
    """

    def __init__(self, dev: DeviceConfig):
        if not isinstance(dev, DeviceConfig):
            raise TypeError(f"dev must be a DeviceConfig, not {dev!r}")
        self._dev = dev
        self._identify = encode_identify(dev)
        ports = {
            "events": In(stream.Signature(event_layout())),
            "header": Out(stream.Signature(header_layout())),
            "data": Out(stream.Signature(8)),
            "bad_header": In(1), "tx_stall": In(1),
        }
        # The datapath's ports, flipped (``datapath_signature``: one definition for both).
        ports.update(datapath_signature(dev).flip().members)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        R, C = c.rows, c.cols

        opcode = Signal(8)
        # The frame's data bytes: the arguments first (``idx``, while ``in_args``), then the
        # staged payload (``sidx``; ``s_room``: ``sidx < frame_bytes``), as counters and flags
        # (timing: no subtract and compare of ``idx`` with ``n_args`` on the way to the
        # argument and staging write enables).
        idx = Signal(range(_ARGS_BYTES + 1))
        arg_at = Signal(_ARGS_BYTES)    # one-hot: the argument byte ``idx`` (timing: no decode)
        in_args = Signal()
        # One flag per opcode the device knows, decoded from the header event and registered
        # (timing: the checks test one flag, not an 8-bit compare).
        is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in _opcodes(dev)}
        is_run = is_op[Opcode.RUN]
        sidx = Signal(range(dev.frame_bytes + 1))
        s_room = Signal()
        args = Signal(8 * _ARGS_BYTES)
        # Argument bits that no command can use in range are not stored (``_kept_bits``): a set
        # one raises ``dropped`` (``dropped_thr`` for RUN's thresh_base, which only a RUN with
        # thresholds checks), which makes the command OUT_OF_RANGE like the compares would.
        kept = _kept_bits(dev)
        thr_bytes = _run_thresh_bytes()
        dropped, dropped_thr = Signal(), Signal()
        # An argument byte's bits beyond the kept ones, by (kind of byte, kept width): a flag
        # each, registered, then their OR into ``dropped`` or ``dropped_thr`` (timing: one OR
        # over every argument byte's position was one path with the event's bits).
        hi_groups = sorted({(j in thr_bytes, k) for j, k in enumerate(kept) if k < 8})
        hi = {g: Signal(name=f"hi_{'thr' if g[0] else 'plain'}_{g[1]}") for g in hi_groups}
        m.d.sync += [f.eq(0) for f in hi.values()]
        hi_plain = Cat(*(f for (thr, _), f in hi.items() if not thr)).any()
        hi_thr = Cat(*(f for (thr, _), f in hi.items() if thr)).any()
        with m.If(hi_plain | (hi_thr & ~is_run)):
            m.d.sync += dropped.eq(1)
        with m.If(hi_thr & is_run):
            m.d.sync += dropped_thr.eq(1)
        view = {op: data.View(_args_layout(op), args[:8 * args_size(op)]) for op in _opcodes(dev)}
        tag = view[Opcode.IDENTIFY].tag
        status = Signal(8)

        # Decoded from the header event's opcode and registered with it (timing: CHECK then
        # starts from registers only).
        known, hdr_known = Signal(), Signal()
        n_args, hdr_n_args = Signal(range(_ARGS_BYTES + 1)), Signal(range(_ARGS_BYTES + 1))
        # The header's length, then at the frame's END (timing: not the opcode's decode and a
        # subtract in one cycle):
        hdr_len = Signal(16)
        short = Signal()                # length < n_args
        data_len = Signal(16)           # length - n_args
        m.d.comb += hdr_n_args.eq(1)
        with m.Switch(self.events.payload.opcode):
            for op in _opcodes(dev):
                with m.Case(op):
                    m.d.comb += [hdr_known.eq(1), hdr_n_args.eq(args_size(op))]

        # Staging buffer for a LOAD's data (``no_rw_check``: written in RECV, read in COPY).
        m.submodules.staging = staging = memory.Memory(shape=8, depth=dev.frame_bytes, init=[],
                                                       attrs={"no_rw_check": 1})
        stage_w, stage_r = staging.write_port(), staging.read_port()
        # Its writes are registered (timing: the state decode and the event's kind into the
        # block's address pins); COPY reads it several states after the frame's last byte.
        sw_addr, sw_data, sw_en = Signal.like(stage_w.addr), Signal(8), Signal()
        m.d.sync += sw_en.eq(0)
        m.d.comb += [stage_w.addr.eq(sw_addr), stage_w.data.eq(sw_data), stage_w.en.eq(sw_en)]

        # Link counters, in a block RAM: ``link[name]`` is the counter's increment this cycle.
        m.submodules.link_counters = bank = CounterBank(count=len(LINK_COUNTERS))
        link = {name: bank.inc[i] for i, name in enumerate(LINK_COUNTERS)}
        clear_link = Signal()
        # (uptime counts every cycle; not a constant 1, which Yosys writes as an ``always @*``
        # block without inputs that a Verilog simulator never runs.)
        m.d.comb += [bank.clear.eq(clear_link), link["uptime"].eq(~clear_link)]
        # (Inside ``If``: an input still X early in a Verilog simulation counts nothing.)
        with m.If(self.bad_header):
            m.d.comb += link["bad_header"].eq(1)
        with m.If(self.tx_stall):
            m.d.comb += link["tx_stall"].eq(1)

        # Reply sources.
        reply = Signal(_Reply)
        reply_len = Signal(16)
        ans_len = Signal(16)            # the answer frame's length: reply_len + 2, or 2
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
        # RUN answers the first ``len(RUN_ANSWER)`` words, LAYER all ``len(LAYER_ANSWER)``.
        run_info = [Signal(32, name=f"info{i}") for i in range(len(LAYER_ANSWER))]
        core_words = [getattr(self.core_counters, n) for n in CORE_COUNTERS]
        n_words = len(core_words) + len(LINK_COUNTERS)      # READ_COUNTERS' answer
        words_sel = Signal()            # 0: run info, 1: counters
        word_src = Array(run_info + core_words)
        word = Signal(max(32, dev.result_word_bits))
        wsel = Signal(range(len(run_info) + n_words + 1))   # word_src index, then the bank's
        bank_sel = Signal()             # the word comes from the counter bank
        bank_idx = Signal(range(len(LINK_COUNTERS)))
        word_pick = Signal(32)
        widx = Signal(16)
        bidx = Signal(range(max(len(self._identify), word.shape().width // 8) + 1))
        n_bytes = Signal(range(word.shape().width // 8 + 1))
        m.d.comb += ident_rd.addr.eq(bidx)
        m.d.sync += ident_last.eq(bidx == len(self._identify) - 1)
        # What the result store holds survives a device reset, like the store itself.
        stored_beats = Signal(range(dev.result_beats + 1), reset_less=True)
        stored_thr = Signal(reset_less=True)
        bpb = Mux(stored_thr, dev.result_beat_bytes(True), dev.result_beat_bytes(False))
        rr = view[Opcode.READ_RESULTS]
        count_bytes = Mux(stored_thr, rr.count * dev.result_beat_bytes(True),
                          rr.count * dev.result_beat_bytes(False))
        left = Signal(16)               # answer bytes still to send (a down-counter: timing)
        # left == 1 and bidx == n_bytes - 1, as registers (timing: BYTES decides on them).
        left_one, byte_last = Signal(), Signal()
        # The stores' read data, registered (timing: a block RAM's output is slow; not on
        # iCE40, whose UP5K has no logic cells to spare). FETCH reads, the data shows in HOLD
        # and holds; it is in these registers by LATCH.
        staged_write = not ice40            # a LOAD's store write behind two more stages

        def read_word(rdata):
            if ice40:
                return rdata
            word = Signal.like(rdata, reset_less=True)
            m.d.sync += word.eq(rdata)
            return word

        res_word = read_word(self.res_rdata)
        if dev.layer is not None:
            resid_word = read_word(self.resid_rdata)

        # VERDICT stage registers: the status, what to do, and its set-up values.
        v_status = Signal(8)
        go = Signal(data.StructLayout({name: 1 for name in (
            "load", "run", "results", "residual", "layer", "identify", "counters", "reset",
            "clear_cache")}))
        v_len = Signal(16)

        # CHECK stage registers.
        len_nz, len_bad, run_bad = Signal(), Signal(), Signal()
        region_end = Signal(34)
        # A RUN's region ends (SIZE_BEATS), compared with the stores' depths in SIZE_CHECK:
        # each as wide as its store's depth or its row count, whichever is wider, plus one.
        run_ends = [Signal(max(depth.bit_length(), most.bit_length()) + 1, name=f"run_end_{name}")
                    for name, depth, most in (
                        ("act", dev.act_words, c.max_t * c.max_chunks),
                        ("weight", dev.weight_words, c.max_n * c.max_chunks),
                        ("thresh", dev.thresh_words, c.max_n))]

        # LOAD copy state.
        device_loads = loads(dev)
        # CHECK_END's flags: region_end beyond each LOAD's store, the stored results, the
        # residual store.
        over_load = [Signal(name=f"over_{name}") for _, name, _, _ in device_loads]
        over_res, over_resid = Signal(), Signal()
        max_unit = max(u for _, _, u, _ in device_loads)
        unit_mask = Signal(range(max_unit))
        sel = Signal(len(device_loads))        # one-hot, in the order of ``device_loads``
        v_sel, v_unit_mask = Signal.like(sel), Signal(range(max_unit))
        copy_i = Signal(range(dev.frame_bytes + 1))
        copy_last = Signal()            # copy_i == data_len, as a register (timing)
        copy_rem = Signal(16)           # data_len - copy_i - 1: copy_last's next value is
                                        # copy_rem == 0 (timing: no adder before the compare)
        in_word = Signal(range(max_unit))
        word_i = Signal(16)
        d_valid, d_last = Signal(), Signal()
        d_addr = Signal.like(self.st_waddr)
        e_valid, e_last, e_addr = Signal(), Signal(), Signal.like(self.st_waddr)
        e_byte = Signal(8, reset_less=True)     # (no reset: it can be the block RAM's register)
        offset = Signal(32)
        acc = Signal(8 * max_unit)
        f_valid, f_word, f_addr = Signal(), Signal(8 * max_unit), Signal.like(self.st_waddr)
        g_valid, g_word, g_addr = Signal(), Signal(8 * max_unit), Signal.like(self.st_waddr)

        def sat_fields(word):
            """For each of ``device_loads``, the saturated fields of its store's word in ``word``:
            (signed value, width it saturates to) each; none for a store written as is."""
            fields = []
            for _, name, unit, _ in device_loads:
                w = word[len(word) - 8 * unit:]
                if name == "thresh":
                    fields.append([(w.as_signed(), c.threshold_width)])
                elif name == "param":
                    fields.append([(w[32 * i:32 * i + 32].as_signed(), PARAM_BITS)
                                   for i in range(c.cols)])
                else:
                    fields.append([])
            return fields
        g_flags = [[(Signal(name=f"g_hi_{name}{i}"), Signal(name=f"g_lo_{name}{i}"))
                    for i in range(len(f))]
                   for (_, name, _, _), f in zip(device_loads, sat_fields(f_word), strict=True)]

        # RUN sizing state.
        rp = Signal(run_layout(dev))
        kw = Signal(range(c.max_chunks + 1))
        # Rows still to count after this one (down-counters: timing), and whether this one
        # counts: ``t_more``, ``n_more``; then the token-tile rows still to add to ``beats``.
        t_rem, n_rem = Signal(range(c.max_t + 1)), Signal(range(c.max_n + 1))
        t_more, n_more = Signal(), Signal()
        b_rem, b_more = Signal(range(c.max_n + 1)), Signal()
        t_mod, t_tiles = Signal(range(R)), Signal(range(c.max_t + 1))
        n_mod, n_tiles = Signal(range(C)), Signal(range(c.max_n + 1))
        act_need = Signal(range(c.max_t * c.max_chunks + 1))
        w_need = Signal(range(c.max_n * c.max_chunks + 1))
        beats = Signal(range(-(-c.max_n // C) * c.max_t + 1))
        per_tile = Signal(range(c.max_t + 1))
        size_over = Signal(4)           # the regions and the beats beyond their stores

        ev = self.events.payload
        layer = dev.layer is not None
        rres = view.get(Opcode.READ_RESIDUAL)
        resid_bytes = RESIDUAL_BYTES * c.cols

        def respond(code, kind=_Reply.NONE, n=0):
            return [status.eq(code), reply.eq(kind), reply_len.eq(n)]

        m.d.sync += [getattr(self, f"{name}_wen").eq(0) for _, name, _, _ in device_loads]

        if layer:
            # LAYER starts from a register (timing): high the first cycle of LAYER_WAIT. The
            # parameters are fields of the argument register, steady while the command runs.
            layer_go = Signal()
            m.d.sync += layer_go.eq(0)
            m.d.comb += self.layer_start.eq(layer_go)
            a = view[Opcode.LAYER]
            for name, _ in ARGUMENTS[Opcode.LAYER]:
                if name != "tag":
                    m.d.comb += getattr(self.layer_params, name).eq(getattr(a, name))

        # ``events.ready`` is a register, high exactly while the FSM is in RECV (timing: the
        # receiver's next step waits on it, and a decoded state is several logic levels).
        recv = Signal(init=1)
        m.d.comb += self.events.ready.eq(recv)

        with m.FSM():
            with m.State("RECV"):
                with m.If(self.events.valid):
                    with m.Switch(ev.kind):
                        with m.Case(EventKind.HEADER):
                            m.d.sync += [opcode.eq(ev.opcode), idx.eq(0), arg_at.eq(1),
                                         *(flag.eq(ev.opcode == op)
                                           for op, flag in is_op.items()),
                                         in_args.eq(hdr_n_args != 0), sidx.eq(0),
                                         s_room.eq(1),
                                         args.eq(0), dropped.eq(0), dropped_thr.eq(0),
                                         known.eq(hdr_known), n_args.eq(hdr_n_args),
                                         hdr_len.eq(ev.value)]
                        with m.Case(EventKind.DATA):
                            with m.If(in_args):
                                m.d.sync += [idx.eq(idx + 1), in_args.eq(idx + 1 != n_args),
                                             arg_at.eq(arg_at << 1)]
                            with m.Else():
                                m.d.sync += [sidx.eq(sidx + 1),
                                             s_room.eq(s_room & (sidx != dev.frame_bytes - 1))]
                            for j, k in enumerate(kept):
                                with m.If(in_args & arg_at[j]):
                                    if k:
                                        m.d.sync += args[8 * j:8 * j + k].eq(ev.value[:k])
                            # Set bits beyond the kept ones, by kind of byte and kept width;
                            # they raise ``dropped`` or ``dropped_thr`` a cycle later (timing),
                            # before CHECK, which follows the END event a cycle later at the
                            # earliest.
                            with m.If(in_args):
                                for (thr, w), flag in hi.items():
                                    at = Cat(*(arg_at[j] for j, k in enumerate(kept)
                                               if k == w and (j in thr_bytes) == thr)).any()
                                    m.d.sync += flag.eq(at & ev.value[w:8].any())
                            m.d.sync += [sw_addr.eq(sidx), sw_data.eq(ev.value[:8]),
                                         sw_en.eq(~in_args & s_room)]
                        with m.Case(EventKind.END):
                            m.d.sync += recv.eq(0)       # every END leaves RECV
                            m.d.sync += [short.eq(hdr_len < n_args),
                                         data_len.eq(hdr_len - n_args)]
                            with m.If(ev.ok):
                                m.d.comb += link["frames"].eq(1)
                                m.next = "CHECK"
                            with m.Elif(ev.timed_out):
                                m.d.comb += link["timeouts"].eq(1)
                                m.d.sync += respond(Status.TIMED_OUT)
                                m.next = "HEADER"
                            with m.Else():
                                m.d.comb += link["bad_crc"].eq(1)
                                m.d.sync += respond(Status.BAD_CRC)
                                m.next = "HEADER"

            with m.State("CHECK"):
                # Three stages so that every comparison starts and ends in a register: CHECK
                # forms the sums and the compares against constants, CHECK_END compares the
                # sums with the store depths, VERDICT turns the flags into a status and one go
                # flag, DECIDE acts on that.
                m.next = "CHECK_END"
                m.d.sync += [len_nz.eq(data_len != 0), run_bad.eq(0), len_bad.eq(0)]
                for op, _, unit, _ in device_loads:
                    with m.If(is_op[op]):
                        sh = unit.bit_length() - 1
                        m.d.sync += [len_bad.eq((data_len > dev.frame_bytes) |
                                                (data_len & (unit - 1)).any()),
                                     region_end.eq(view[op].offset + (data_len >> sh))]
                with m.If(is_op[Opcode.RUN]):
                    a = view[Opcode.RUN]
                    m.d.sync += run_bad.eq(
                        dropped | (dropped_thr & (a.flags & RUN_THRESHOLD).any()) |
                        (a.op > max(Op)) | (a.flags & ~RUN_THRESHOLD & 0xFF).any() |
                        (a.t == 0) | (a.t > c.max_t) | (a.n == 0) | (a.n > c.max_n) |
                        (a.k == 0) | (a.k > c.max_k))
                with m.If(is_op[Opcode.READ_RESULTS]):
                    m.d.sync += [region_end.eq(rr.offset + rr.count),
                                 len_bad.eq(count_bytes > 0xFFFF - 2)]
                if layer:
                    with m.If(is_op[Opcode.READ_RESIDUAL]):
                        m.d.sync += [region_end.eq(rres.offset + rres.count),
                                     len_bad.eq(rres.count * resid_bytes > 0xFFFF - 2)]

            with m.State("CHECK_END"):
                # Every compare into its own flag, whatever the opcode; VERDICT picks the
                # opcode's (timing: no opcode multiplexer between a compare and its register).
                m.next = "VERDICT"
                m.d.sync += [f.eq(region_end > depth)
                             for f, (_, _, _, depth) in zip(over_load, device_loads, strict=True)]
                m.d.sync += over_res.eq(region_end > stored_beats)
                if layer:
                    m.d.sync += over_resid.eq(region_end > dev.layer.res_words)

            with m.State("VERDICT"):
                # The answer's status and one "go" flag, from the CHECK flags (timing: DECIDE's
                # wide register loads then hang off one registered flag each).
                m.next = "DECIDE"
                m.d.sync += [v_status.eq(Status.OK), go.eq(0)]
                with m.If(~known):
                    m.d.sync += v_status.eq(Status.UNKNOWN_OPCODE)
                with m.Elif(short):
                    m.d.sync += v_status.eq(Status.BAD_LENGTH)
                with m.Else():
                    def verdict(op, bad_length, out_of_range, accept):
                        """Command ``op``: BAD_LENGTH, else OUT_OF_RANGE, else ``accept``."""
                        with m.If(is_op[op]):
                            with m.If(bad_length):
                                m.d.sync += v_status.eq(Status.BAD_LENGTH)
                            with m.Elif(out_of_range):
                                m.d.sync += v_status.eq(Status.OUT_OF_RANGE)
                            with m.Else():
                                m.d.sync += accept

                    for store, (op, _, unit, _) in enumerate(device_loads):
                        verdict(op, len_bad, over_load[store] | dropped,
                                [go.load.eq(1), v_sel.eq(1 << store), v_unit_mask.eq(unit - 1)])
                    verdict(Opcode.RUN, len_nz, run_bad, go.run.eq(1))
                    verdict(Opcode.READ_RESULTS, len_nz, over_res | len_bad | dropped,
                            [go.results.eq(1), v_len.eq(count_bytes)])
                    if layer:
                        verdict(Opcode.READ_RESIDUAL, len_nz, over_resid | len_bad | dropped,
                                [go.residual.eq(1), v_len.eq(rres.count * resid_bytes)])
                    # The commands with nothing to check beyond their length (those this
                    # device knows).
                    for op, flag in ((Opcode.IDENTIFY, go.identify),
                                     (Opcode.READ_COUNTERS, go.counters),
                                     (Opcode.RESET, go.reset),
                                     (Opcode.CLEAR_CACHE, go.clear_cache),
                                     (Opcode.LAYER, go.layer)):
                        if op in is_op:
                            verdict(op, len_nz, Const(0, 1), flag.eq(1))

            with m.State("DECIDE"):
                m.next = "HEADER"
                m.d.sync += respond(v_status)
                with m.If(go.load):
                    # (Every LOAD's arguments are the tag, then the offset.)
                    m.d.sync += [sel.eq(v_sel), unit_mask.eq(v_unit_mask),
                                 offset.eq(view[device_loads[0][0]].offset), copy_i.eq(0),
                                 copy_last.eq(~len_nz), copy_rem.eq(data_len - 1),
                                 in_word.eq(0), word_i.eq(0), d_valid.eq(0), e_valid.eq(0)]
                    m.next = "COPY"
                with m.If(go.run):
                    a = view[Opcode.RUN]
                    m.d.sync += [
                        rp.op.eq(a.op), rp.threshold.eq(a.flags[0]),
                        rp.t.eq(a.t), rp.n.eq(a.n), rp.k.eq(a.k),
                        kw.eq((a.k + c.lanes - 1) >> c.lane_bits),
                        t_rem.eq(a.t - 1), n_rem.eq(a.n - 1),
                        t_more.eq(1), n_more.eq(1),             # (t, n >= 1 here)
                        t_mod.eq(0), t_tiles.eq(0), n_mod.eq(0),
                        n_tiles.eq(0), act_need.eq(0), w_need.eq(0), beats.eq(0),
                    ]
                    m.next = "SIZE"
                with m.If(go.results):
                    m.d.sync += [respond(Status.OK, _Reply.RESULTS, v_len), offset.eq(rr.offset)]
                with m.If(go.identify):
                    m.d.sync += respond(Status.OK, _Reply.IDENT, len(self._identify))
                with m.If(go.counters):
                    m.d.sync += [respond(Status.OK, _Reply.WORDS, 4 * n_words), words_sel.eq(1)]
                with m.If(go.reset):
                    m.d.comb += clear_link.eq(1)
                    m.d.sync += stored_beats.eq(0)
                    if layer:
                        m.d.comb += self.clear_cache.eq(1)
                if layer:
                    with m.If(go.residual):
                        m.d.sync += [respond(Status.OK, _Reply.RESIDUAL, v_len),
                                     offset.eq(rres.offset)]
                    with m.If(go.layer):
                        m.d.sync += layer_go.eq(1)
                        m.next = "LAYER_WAIT"
                    with m.If(go.clear_cache):
                        m.d.comb += self.clear_cache.eq(1)

            with m.State("COPY"):
                # Read staging byte copy_i; a cycle later register it (timing: a block RAM's
                # output is slow), a cycle after that shift it into the word and write the word
                # when its last byte is in.
                last_i = copy_last
                word_end = in_word == unit_mask
                m.d.comb += [stage_r.addr.eq(copy_i), stage_r.en.eq(~last_i)]
                m.d.sync += [d_valid.eq(~last_i), d_last.eq(word_end),
                             d_addr.eq(offset + word_i),
                             e_valid.eq(d_valid), e_last.eq(d_last), e_addr.eq(d_addr),
                             e_byte.eq(stage_r.data)]
                with m.If(~last_i):
                    m.d.sync += [copy_i.eq(copy_i + 1), copy_rem.eq(copy_rem - 1),
                                 copy_last.eq(copy_rem == 0),
                                 in_word.eq(Mux(word_end, 0, in_word + 1))]
                    with m.If(word_end):
                        m.d.sync += word_i.eq(word_i + 1)
                # Bytes enter at the top of ``acc``: a word of ``unit`` bytes is its top bits.
                nxt = Cat(acc[8:], e_byte)
                aw = len(acc)
                with m.If(e_valid):
                    m.d.sync += acc.eq(nxt)
                if staged_write:
                    # Stage f: the whole word; stage g: the saturating compares' flags
                    # registered with it; then the store write, registered too (timing: the
                    # block RAM's byte, the shift and the compares were one path).
                    m.d.sync += [f_valid.eq(e_valid & e_last), g_valid.eq(f_valid),
                                 g_word.eq(f_word), g_addr.eq(f_addr)]
                    with m.If(e_valid & e_last):
                        m.d.sync += [f_word.eq(nxt), f_addr.eq(e_addr)]
                    for flags, fields in zip(g_flags, sat_fields(f_word), strict=True):
                        for (hi, lo), (value, bits) in zip(flags, fields, strict=True):
                            m.d.sync += Cat(hi, lo).eq(Cat(*_sat_flags(value, bits)))
                    w_valid, w_word, w_addr, w_flags = g_valid, g_word, g_addr, g_flags
                else:
                    # (iCE40: the registered store write straight from stage e; the UP5K has
                    # no logic cells to spare for the stages.)
                    w_valid, w_word, w_addr = e_valid & e_last, nxt, e_addr
                    w_flags = [[_sat_flags(value, bits) for value, bits in fields]
                               for fields in sat_fields(nxt)]
                with m.If(w_valid):
                    m.d.sync += self.st_waddr.eq(w_addr)
                    for store, ((_, name, unit, _), flags, fields) in enumerate(
                            zip(device_loads, w_flags, sat_fields(w_word), strict=True)):
                        w_in = w_word[aw - 8 * unit:]
                        if fields:
                            w_in = Cat(*(_saturated(value, bits, hi, lo)
                                         for (hi, lo), (value, bits) in zip(flags, fields,
                                                                            strict=True)))
                        with m.If(sel[store]):
                            m.d.sync += [self.st_wdata.eq(w_in),
                                         getattr(self, f"{name}_wen").eq(1)]
                with m.If(last_i & ~d_valid & ~e_valid & ~f_valid & ~g_valid):
                    m.next = "HEADER"

            with m.State("SIZE"):
                # Rows of the activations and weights (ceil(K / L) words each) and tiles of
                # tokens and outputs, counted one row a cycle.
                for rem, more, need, mod, tiles, tile in (
                        (t_rem, t_more, act_need, t_mod, t_tiles, R),
                        (n_rem, n_more, w_need, n_mod, n_tiles, C)):
                    m.d.sync += [rem.eq(rem - 1), more.eq(more & (rem != 0))]
                    with m.If(more):
                        m.d.sync += [need.eq(need + kw), mod.eq(Mux(mod == tile - 1, 0, mod + 1))]
                        with m.If(mod == 0):
                            m.d.sync += tiles.eq(tiles + 1)
                with m.If(~t_more & ~n_more):
                    # (n_tiles >= 1: n >= 1.)
                    m.d.sync += [b_rem.eq(n_tiles), b_more.eq(1),
                                 per_tile.eq(Mux(rp.threshold, t_tiles, rp.t))]
                    m.next = "SIZE_BEATS"

            with m.State("SIZE_BEATS"):
                with m.If(b_more):
                    m.d.sync += [beats.eq(beats + per_tile), b_rem.eq(b_rem - 1),
                                 b_more.eq(b_rem != 1)]
                with m.Else():
                    # The regions' ends into registers; SIZE_CHECK compares them (timing: no
                    # path through an adder and a compare into the decision).
                    a = view[Opcode.RUN]
                    for end, (base, need, depth) in zip(run_ends, (
                            (a.act_base, act_need, dev.act_words),
                            (a.weight_base, w_need, dev.weight_words),
                            (a.thresh_base, rp.n, dev.thresh_words)), strict=True):
                        # Only as wide as the store needs: a base beyond it ends past it.
                        b = depth.bit_length()
                        m.d.sync += end.eq(Mux((base >> b).any(), depth + 1, base[:b] + need))
                    with m.If(~rp.threshold):
                        m.d.sync += run_ends[2].eq(0)
                    m.next = "SIZE_CHECK"

            with m.State("SIZE_CHECK"):
                # Each compare into its own flag; LAUNCH ORs them (timing).
                m.d.sync += size_over.eq(Cat(run_ends[0] > dev.act_words,
                                             run_ends[1] > dev.weight_words,
                                             run_ends[2] > dev.thresh_words,
                                             beats > dev.result_beats))
                m.next = "LAUNCH"

            with m.State("LAUNCH"):
                m.next = "HEADER"
                with m.If(size_over.any()):
                    m.d.sync += status.eq(Status.OUT_OF_RANGE)
                with m.Else():
                    m.d.comb += self.run_start.eq(1)
                    m.next = "RUN"
                m.d.comb += self.run_params.eq(rp)
                m.d.comb += [self.run_params.act_base.eq(view[Opcode.RUN].act_base),
                             self.run_params.act_count.eq(act_need),
                             self.run_params.weight_base.eq(view[Opcode.RUN].weight_base),
                             self.run_params.weight_count.eq(w_need),
                             self.run_params.thresh_base.eq(view[Opcode.RUN].thresh_base),
                             self.run_params.thresh_count.eq(rp.n)]

            with m.State("RUN"):
                with m.If(self.run_done):
                    m.d.sync += [stored_beats.eq(Mux(self.run_error, 0, self.run_beats)),
                                 stored_thr.eq(rp.threshold),
                                 run_info[0].eq(self.run_beats),
                                 run_info[1].eq(self.core_counters.busy),
                                 respond(Mux(self.run_error, Status.FAULT, Status.OK),
                                         _Reply.WORDS, 4 * len(RUN_ANSWER)),
                                 words_sel.eq(0)]
                    m.next = "HEADER"

            if layer:
                with m.State("LAYER_WAIT"):
                    with m.If(self.layer_done):
                        m.d.sync += [respond(self.layer_status, _Reply.WORDS,
                                             4 * len(LAYER_ANSWER)),
                                     run_info[0].eq(self.layer_cycles),
                                     run_info[1].eq(self.layer_active),
                                     run_info[2].eq(self.layer_kv_length), words_sel.eq(0)]
                        with m.If((self.layer_status == Status.OK) &
                                  (view[Opcode.LAYER].flags & LAYER_HEAD).any()):
                            m.d.sync += [stored_beats.eq(self.run_beats), stored_thr.eq(0)]
                        m.next = "HEADER"

            with m.State("HEADER"):
                # The answer's length into a register (timing: the status compare and an
                # adder went on into the sender's length registers).
                m.d.sync += ans_len.eq(Mux(status == Status.OK, reply_len, 0) + 2)
                m.next = "HEADER_OUT"
            with m.State("HEADER_OUT"):
                m.d.comb += [self.header.valid.eq(1),
                             self.header.payload.opcode.eq(opcode | 0x80),
                             self.header.payload.length.eq(ans_len)]
                with m.If(self.header.ready):
                    with m.If(status != Status.OK):
                        m.d.comb += link["errors"].eq(1)
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(status)]
                with m.If(self.data.ready):
                    m.next = "TAG"
            with m.State("TAG"):
                m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(tag)]
                with m.If(self.data.ready):
                    m.d.sync += [bidx.eq(0), widx.eq(0), left.eq(reply_len),
                                 left_one.eq(reply_len == 1),
                                 wsel.eq(Mux(words_sel, len(run_info), 0)),
                                 bank_sel.eq(0), bank_idx.eq(0), ident_on.eq(0)]
                    m.d.sync += recv.eq(1)
                    m.next = "RECV"
                    with m.If(status == Status.OK):
                        with m.Switch(reply):
                            with m.Case(_Reply.IDENT):
                                m.d.sync += recv.eq(0)
                                m.next = "IDENT"
                            with m.Case(_Reply.WORDS, _Reply.RESULTS, _Reply.RESIDUAL):
                                # (A read of no words answers no data.)
                                with m.If(reply_len != 0):
                                    m.d.sync += recv.eq(0)
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
                        m.d.sync += recv.eq(1)
                        m.next = "RECV"
            with m.State("FETCH"):
                m.d.comb += [self.res_raddr.eq(offset + widx), self.res_ren.eq(1)]
                if layer:
                    m.d.comb += [self.resid_raddr.eq(offset + widx), self.resid_ren.eq(1)]
                m.d.comb += [bank.raddr.eq(bank_idx), bank.ren.eq(bank_sel)]
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
                m.d.sync += [word.eq(Mux(reply == _Reply.RESULTS, res_word,
                                         Mux(bank_sel, bank.rdata, word_pick))),
                             n_bytes.eq(Mux(reply == _Reply.RESULTS, bpb, 4)), bidx.eq(0),
                             byte_last.eq((reply == _Reply.RESULTS) & (bpb == 1))]
                if layer:
                    with m.If(reply == _Reply.RESIDUAL):
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
                        m.d.sync += recv.eq(1)
                        m.next = "RECV"
                    with m.Elif(byte_last):
                        m.d.sync += [widx.eq(widx + 1), wsel.eq(wsel + 1)]
                        with m.If(wsel == len(run_info) + len(core_words) - 1):
                            m.d.sync += bank_sel.eq(1)
                        with m.If(bank_sel):
                            m.d.sync += bank_idx.eq(bank_idx + 1)
                        m.next = "FETCH"

        m.d.comb += link["exec"].eq(~recv)
        return m
