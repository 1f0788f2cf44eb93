"""A command's frame taken apart and checked: the argument register, the staged payload, a verdict.

``ArgumentDecoder`` takes ``FrameReceiver``'s events while ``listen`` is high. A frame's first
data bytes fill the argument register ``args`` (the fields of ``onebit.host.protocol.ARGUMENTS``
for its opcode, read through ``args_view``); the rest go to ``stage`` (the LOAD staging
buffer's write port, one registered byte a cycle, at most ``frame_bytes``). ``end`` pulses when
the frame's END is taken (``end_ok``: its CRC matched; ``end_timed_out``: it was abandoned).

After an ``end_ok`` the checks run in four stages (CHECK, CHECK_SUM, CHECK_END, VERDICT: every
compare and the region's sum start and end in a register), and ``decided`` is high the cycle
the ``verdict`` registers are loaded; they hold until the next frame's checks. The verdict:
the status (``UNKNOWN_OPCODE``, ``BAD_LENGTH``, ``OUT_OF_RANGE`` or ``OK``), one ``go`` flag
for the command to execute, and for a LOAD its store (one-hot ``sel``, in ``loads(dev)``'s
order) and ``unit - 1``; for a read its answer's length. The argument register keeps only the
bits a field can use in range; a set bit beyond them makes the command out of range. A RUN's
regions are checked later, by ``RunSizer``.

Latency: ``decided`` four cycles after ``end_ok``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.core_config import Op
from ...host.device_config import RESIDUAL_BYTES, DeviceConfig
from ...host.loads import loads
from ...host.protocol import (
    ARGUMENTS,
    LAYER_OPCODES,
    RUN_BITS_MASK,
    RUN_BITS_SHIFT,
    RUN_THRESHOLD,
    Opcode,
    Status,
    args_size,
)
from ..core.gemm_layouts import by_bits
from .frame_rx import EventKind, event_layout

__all__ = ["ArgumentDecoder", "ARGS_BYTES", "args_layout", "args_view", "opcodes", "go_layout"]

#: Bytes of the argument register: the longest command's arguments.
ARGS_BYTES = max(args_size(op) for op in ARGUMENTS)


def args_layout(opcode: Opcode) -> data.StructLayout:
    return data.StructLayout({name: 8 * size for name, size in ARGUMENTS[opcode]})


def args_view(args, opcode: Opcode) -> data.View:
    """The argument register ``args`` read as ``opcode``'s fields."""
    return data.View(args_layout(opcode), args[:8 * args_size(opcode)])


def opcodes(dev: DeviceConfig) -> list[Opcode]:
    """The commands this device knows."""
    return [op for op in ARGUMENTS if dev.layer is not None or op not in LAYER_OPCODES]


def go_layout() -> data.StructLayout:
    """The verdict's ``go`` flags: at most one set, the command to execute."""
    return data.StructLayout({name: 1 for name in (
        "load", "run", "results", "residual", "layer", "identify", "counters", "reset",
        "clear_cache")})


def _field_bits(dev: DeviceConfig, op: Opcode, name: str, size: int) -> int:
    """Low bits of argument ``name`` that can be set in a command the device accepts: a value
    with a higher bit set is out of range (LAYER's fields go to the layer engine whole)."""
    c = dev.core
    depths = {load: depth for load, _, _, depth in loads(dev)}
    if op in depths and name == "offset":
        return depths[op].bit_length()
    if op == Opcode.RUN:
        flags = (RUN_THRESHOLD | RUN_BITS_MASK) if c.max_bits > 1 else RUN_THRESHOLD
        return {"tag": 8, "op": max(Op).bit_length(), "flags": flags.bit_length(),
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
    kept = [0] * ARGS_BYTES
    for op in opcodes(dev):
        for name, field in args_layout(op):
            bits = _field_bits(dev, op, name, field.width // 8)
            for b in range(field.width // 8):
                at = field.offset // 8 + b
                kept[at] = max(kept[at], min(8, max(0, bits - 8 * b)))
    return kept


def _run_thresh_bytes() -> range:
    """The argument bytes of RUN's ``thresh_base`` (only checked when RUN thresholds)."""
    field = args_layout(Opcode.RUN)["thresh_base"]
    return range(field.offset // 8, (field.offset + field.width) // 8)


def verdict_layout(dev: DeviceConfig) -> data.StructLayout:
    """The ``verdict`` output: status, go flags, a LOAD's store and unit, a read's length."""
    max_unit = max(u for _, _, u, _ in loads(dev))
    return data.StructLayout({"status": 8, "go": go_layout(), "sel": len(loads(dev)),
                              "unit_mask": range(max_unit), "length": 16})


def above(value, limit):
    """``value > limit`` for a ``limit`` narrower than ``value`` (a signal or a non-negative
    constant): any of ``value``'s bits above ``limit``'s width, or the compare of the rest
    (timing: the carry chain is ``limit``'s width, not ``value``'s; the iCEBreaker's critical
    path at 64 lanes was a 34-bit compare with ``stored_beats``)."""
    width = len(limit) if isinstance(limit, Signal) else max(1, int(limit).bit_length())
    if width >= len(value):
        return value > limit
    return value[width:].any() | (value[:width] > limit)


class ArgumentDecoder(wiring.Component):
    """Members
    -------
    events : In(stream.Signature(event_layout()))
        Taken while ``listen`` is high (``events.ready`` is ``listen``).
    listen : In(1)
    stored_beats : In(range(result_beats + 1));  stored_thr : In(1)
        What the result store holds (READ_RESULTS is checked against it).
    end, end_ok, end_timed_out : Out(1)
        An END event is offered (taken when ``listen`` is high), and what it says.
    opcode : Out(8);  args : Out(8 * ARGS_BYTES)
        The frame's opcode and argument register (registers, steady until the next frame).
    data_len : Out(16);  len_nz : Out(1)
        The payload's length beyond the arguments, and whether it is not 0 (from CHECK on).
    stage : Out(StructLayout addr, data, en)
        The staging buffer's write port (registered).
    decided : Out(1);  verdict : Out(verdict_layout(dev))
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev)
        self._dev = dev
        super().__init__({
            "events": In(stream.Signature(event_layout())), "listen": In(1),
            "stored_beats": In(range(dev.result_beats + 1)), "stored_thr": In(1),
            "end": Out(1), "end_ok": Out(1), "end_timed_out": Out(1),
            "opcode": Out(8), "args": Out(8 * ARGS_BYTES),
            "data_len": Out(16), "len_nz": Out(1),
            "stage": Out(data.StructLayout({"addr": range(dev.frame_bytes), "data": 8,
                                            "en": 1})),
            "decided": Out(1), "verdict": Out(verdict_layout(dev)),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        args, verdict, go = self.args, self.verdict, self.verdict.go
        # The frame's data bytes: the arguments first (``idx``, while ``in_args``), then the
        # staged payload (``sidx``; ``s_room``: ``sidx < frame_bytes``), as counters and flags
        # (timing: no subtract and compare of ``idx`` with ``n_args`` on the way to the
        # argument and staging write enables).
        idx = Signal(range(ARGS_BYTES + 1))
        arg_at = Signal(ARGS_BYTES)    # one-hot: the argument byte ``idx`` (timing: no decode)
        in_args = Signal()
        # One flag per opcode the device knows, decoded from the header event and registered
        # (timing: the checks test one flag, not an 8-bit compare).
        is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in opcodes(dev)}
        is_run = is_op[Opcode.RUN]
        sidx = Signal(range(dev.frame_bytes + 1))
        s_room = Signal()
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
        # Each flag's next value is one expression of the event and the take (timing: as a
        # default clear and a set in the DATA case, the take's decode drove the flags' clears;
        # the 25F's critical path at 1024 lanes).
        hi = {g: Signal(name=f"hi_{'thr' if g[0] else 'plain'}_{g[1]}") for g in hi_groups}
        hi_plain = Cat(*(f for (thr, _), f in hi.items() if not thr)).any()
        hi_thr = Cat(*(f for (thr, _), f in hi.items() if thr)).any()
        with m.If(hi_plain | (hi_thr & ~is_run)):
            m.d.sync += dropped.eq(1)
        with m.If(hi_thr & is_run):
            m.d.sync += dropped_thr.eq(1)
        view = {op: args_view(args, op) for op in opcodes(dev)}

        # Decoded from the header event's opcode and registered with it (timing: CHECK then
        # starts from registers only).
        known, hdr_known = Signal(), Signal()
        n_args, hdr_n_args = Signal(range(ARGS_BYTES + 1)), Signal(range(ARGS_BYTES + 1))
        # The header's length, then at the frame's END (timing: not the opcode's decode and a
        # subtract in one cycle):
        hdr_len = Signal(16)
        short = Signal()                # length < n_args
        m.d.comb += hdr_n_args.eq(1)
        with m.Switch(self.events.payload.opcode):
            for op in opcodes(dev):
                with m.Case(op):
                    m.d.comb += [hdr_known.eq(1), hdr_n_args.eq(args_size(op))]
        m.d.sync += self.stage.en.eq(0)

        # CHECK stage registers.
        len_bad, run_bad = Signal(), Signal()
        # The region's first word and length, chosen by opcode in CHECK; their sum in
        # CHECK_SUM (timing: the opcode's multiplexer is not behind the adder's carry chain,
        # the iCEBreaker's critical path at 64 lanes).
        region_at, region_len = Signal(32), Signal(16)
        region_end = Signal(34)
        device_loads = loads(dev)
        # CHECK_END's flags: region_end beyond each LOAD's store, the stored results, the
        # residual store.
        over_load = [Signal(name=f"over_{name}") for _, name, _, _ in device_loads]
        over_res, over_resid = Signal(), Signal()
        layer = dev.layer is not None
        rr = view[Opcode.READ_RESULTS]
        rres = view.get(Opcode.READ_RESIDUAL)
        resid_bytes = RESIDUAL_BYTES * c.cols
        count_bytes = Mux(self.stored_thr, rr.count * dev.result_beat_bytes(True),
                          rr.count * dev.result_beat_bytes(False))

        ev = self.events.payload
        m.d.comb += self.events.ready.eq(self.listen)
        take_arg = self.events.valid & self.listen & (ev.kind == EventKind.DATA) & in_args
        for (thr, w), flag in hi.items():
            at = Cat(*(arg_at[j] for j, k in enumerate(kept)
                       if k == w and (j in thr_bytes) == thr)).any()
            m.d.sync += flag.eq(take_arg & at & ev.value[w:8].any())
        # The events, whatever the state below (timing: ``end`` does not wait on it; while the
        # checks run, ``listen`` is low).
        with m.If(self.events.valid & self.listen):
            with m.Switch(ev.kind):
                with m.Case(EventKind.HEADER):
                    m.d.sync += [self.opcode.eq(ev.opcode), idx.eq(0), arg_at.eq(1),
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
                    # (Set bits beyond the kept ones, by kind of byte and kept width, raise
                    # ``dropped`` or ``dropped_thr`` a cycle later through ``hi``, above
                    # (timing), before CHECK, which follows the END event a cycle later at the
                    # earliest.)
                    m.d.sync += [self.stage.addr.eq(sidx), self.stage.data.eq(ev.value[:8]),
                                 self.stage.en.eq(~in_args & s_room)]
                with m.Case(EventKind.END):
                    m.d.sync += [short.eq(hdr_len < n_args),
                                 self.data_len.eq(hdr_len - n_args)]
        # An END offered, and what it says (timing: not gated by ``listen``; the processor
        # acts on it only while listening, when it is taken).
        m.d.comb += [self.end.eq(self.events.valid & (ev.kind == EventKind.END)),
                     self.end_ok.eq(ev.ok), self.end_timed_out.eq(ev.timed_out)]

        with m.FSM():
            with m.State("RECV"):
                with m.If(self.listen & self.end & self.end_ok):
                    m.next = "CHECK"

            with m.State("CHECK"):
                # CHECK chooses the region and compares against constants, CHECK_SUM forms
                # the region's end, CHECK_END compares it with the store depths, VERDICT turns
                # the flags into a status and one go flag.
                m.next = "CHECK_SUM"
                data_len = self.data_len
                m.d.sync += [self.len_nz.eq(data_len != 0), run_bad.eq(0), len_bad.eq(0)]
                for op, _, unit, _ in device_loads:
                    with m.If(is_op[op]):
                        sh = unit.bit_length() - 1
                        m.d.sync += [len_bad.eq((data_len > dev.frame_bytes) |
                                                (data_len & (unit - 1)).any()),
                                     region_at.eq(view[op].offset),
                                     region_len.eq(data_len >> sh)]
                with m.If(is_op[Opcode.RUN]):
                    a = view[Opcode.RUN]
                    allowed = RUN_THRESHOLD | (RUN_BITS_MASK if c.max_bits > 1 else 0)
                    bad_run = (
                        dropped | (dropped_thr & (a.flags & RUN_THRESHOLD).any()) |
                        (a.op > max(Op)) | (a.flags & ~allowed & 0xFF).any() |
                        (a.t == 0) | (a.t > c.max_t) | (a.n == 0) | (a.n > c.max_n) |
                        (a.k == 0) | (a.k > c.max_k))
                    if c.max_bits > 1:
                        # Activation bits within the core's, XOR only, and the row of A
                        # planes within max_chunks (K compared with a constant per A).
                        a_m1 = (a.flags & RUN_BITS_MASK) >> RUN_BITS_SHIFT
                        too_long = by_bits(a_m1, [a.k > c.max_k_at(b) for b in (1, 2, 3, 4)])
                        bad_run |= ((a_m1 > c.max_bits - 1) |
                                    ((a_m1 != 0) & (a.op != Op.XOR)) | too_long)
                    m.d.sync += run_bad.eq(bad_run)
                with m.If(is_op[Opcode.READ_RESULTS]):
                    m.d.sync += [region_at.eq(rr.offset), region_len.eq(rr.count),
                                 len_bad.eq(count_bytes > 0xFFFF - 2)]
                if layer:
                    with m.If(is_op[Opcode.READ_RESIDUAL]):
                        m.d.sync += [region_at.eq(rres.offset), region_len.eq(rres.count),
                                     len_bad.eq(rres.count * resid_bytes > 0xFFFF - 2)]

            with m.State("CHECK_SUM"):
                m.next = "CHECK_END"
                m.d.sync += region_end.eq(region_at + region_len)

            with m.State("CHECK_END"):
                # Every compare into its own flag, whatever the opcode; VERDICT picks the
                # opcode's (timing: no opcode multiplexer between a compare and its register).
                m.next = "VERDICT"
                m.d.sync += [f.eq(above(region_end, depth))
                             for f, (_, _, _, depth) in zip(over_load, device_loads, strict=True)]
                m.d.sync += over_res.eq(above(region_end, self.stored_beats))
                if layer:
                    m.d.sync += over_resid.eq(above(region_end, dev.layer.res_words))

            with m.State("VERDICT"):
                # The status and one go flag, from the flags (timing: the processor's wide
                # register loads then hang off one registered flag each).
                m.d.comb += self.decided.eq(1)
                m.next = "RECV"
                m.d.sync += [verdict.status.eq(Status.OK), go.eq(0)]
                with m.If(~known):
                    m.d.sync += verdict.status.eq(Status.UNKNOWN_OPCODE)
                with m.Elif(short):
                    m.d.sync += verdict.status.eq(Status.BAD_LENGTH)
                with m.Else():
                    def check(op, bad_length, out_of_range, accept):
                        """Command ``op``: BAD_LENGTH, else OUT_OF_RANGE, else ``accept``."""
                        with m.If(is_op[op]):
                            with m.If(bad_length):
                                m.d.sync += verdict.status.eq(Status.BAD_LENGTH)
                            with m.Elif(out_of_range):
                                m.d.sync += verdict.status.eq(Status.OUT_OF_RANGE)
                            with m.Else():
                                m.d.sync += accept

                    len_nz = self.len_nz
                    for store, (op, _, unit, _) in enumerate(device_loads):
                        check(op, len_bad, over_load[store] | dropped,
                              [go.load.eq(1), verdict.sel.eq(1 << store),
                               verdict.unit_mask.eq(unit - 1)])
                    check(Opcode.RUN, len_nz, run_bad, go.run.eq(1))
                    check(Opcode.READ_RESULTS, len_nz, over_res | len_bad | dropped,
                          [go.results.eq(1), verdict.length.eq(count_bytes)])
                    if layer:
                        check(Opcode.READ_RESIDUAL, len_nz, over_resid | len_bad | dropped,
                              [go.residual.eq(1), verdict.length.eq(rres.count * resid_bytes)])
                    # The commands with nothing to check beyond their length (those this
                    # device knows).
                    for op, flag in ((Opcode.IDENTIFY, go.identify),
                                     (Opcode.READ_COUNTERS, go.counters),
                                     (Opcode.RESET, go.reset),
                                     (Opcode.CLEAR_CACHE, go.clear_cache),
                                     (Opcode.LAYER, go.layer)):
                        if op in is_op:
                            check(op, len_nz, Const(0, 1), flag.eq(1))
        return m
