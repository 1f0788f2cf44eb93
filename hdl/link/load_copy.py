"""A LOAD's staged bytes copied into a store, whole words, thresholds and parameters saturated.

``LoadCopy`` owns the staging buffer (``frame_bytes`` bytes; ``ArgumentDecoder`` writes a
frame's payload into it through ``stage``). ``start`` (one cycle) begins a copy of ``length``
bytes (``length_nz``: it is not 0) into the store ``sel`` (one-hot, in ``loads(dev)``'s order)
from word ``offset`` on: the bytes, little-endian, form words of ``unit_mask + 1`` bytes;
each word is written once its last byte is in (``waddr``, ``wdata``, one ``wen`` per store,
registered). A threshold word saturates to the core's threshold field, a parameter word's
32-bit fields to ``PARAM_BITS``: the same bits the core would take. ``done`` is high the last
cycle of the copy, the cycle the last word's write enable is high.

Latency: a byte a cycle; the last word is written three cycles (iCE40: one cycle) after its
last byte is read, and ``done`` follows the write.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count, check_device
from ...host.device_config import PARAM_BITS, DeviceConfig
from ...host.loads import loads
from ..lib.family import family

__all__ = ["LoadCopy"]


def _sat_flags(value, bits: int):
    """Whether ``value`` is above and below the range of ``bits`` signed bits."""
    top = (1 << (bits - 1)) - 1
    return value > top, value < -top - 1


def _saturated(value, bits: int, hi, lo):
    """``value`` saturated to ``bits`` signed bits, given its ``_sat_flags`` ``hi``, ``lo``."""
    top = (1 << (bits - 1)) - 1
    return Mux(hi, top, Mux(lo, -top - 1, value))[:bits]


class LoadCopy(wiring.Component):
    """Members
    -------
    stage : In(StructLayout addr, data, en)
        The staging buffer's write port.
    start : In(1);  sel : In(len(loads(dev)));  unit_mask : In(range(max unit))
    offset : In(addr_bits);  length : In(16);  length_nz : In(1)
        The copy to begin (read the cycle ``start`` is high).
    waddr : Out(addr_bits);  wdata : Out(word_bits);  wen : Out(len(loads(dev)))
        The store write (registered), one enable per store.
    done : Out(1)
    """

    def __init__(self, dev: DeviceConfig, *, addr_bits: int, word_bits: int):
        check_device(dev)
        check_count("Store address width", addr_bits, low=0)   # (a store of one word)
        check_count("Store word width", word_bits)
        self._dev = dev
        device_loads = loads(dev)
        max_unit = max(u for _, _, u, _ in device_loads)
        super().__init__({
            "stage": In(data.StructLayout({"addr": range(dev.frame_bytes), "data": 8,
                                           "en": 1})),
            "start": In(1), "sel": In(len(device_loads)), "unit_mask": In(range(max_unit)),
            "offset": In(addr_bits), "length": In(16), "length_nz": In(1),
            "waddr": Out(addr_bits), "wdata": Out(word_bits), "wen": Out(len(device_loads)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        device_loads = loads(dev)
        # (``no_rw_check``: written while a frame arrives, read during the copy.)
        m.submodules.staging = staging = memory.Memory(shape=8, depth=dev.frame_bytes, init=[],
                                                       attrs={"no_rw_check": 1})
        stage_w, stage_r = staging.write_port(), staging.read_port()
        m.d.comb += [stage_w.addr.eq(self.stage.addr), stage_w.data.eq(self.stage.data),
                     stage_w.en.eq(self.stage.en)]
        # A LOAD's store write behind two more stages (not on iCE40: the UP5K has no logic
        # cells to spare).
        staged_write = family(platform) != "ice40"

        max_unit = max(u for _, _, u, _ in device_loads)
        unit_mask = Signal(range(max_unit))
        sel = Signal(len(device_loads))
        copy_i = Signal(range(dev.frame_bytes + 1))
        copy_last = Signal()            # copy_i == length, as a register (timing)
        copy_rem = Signal(16)           # length - copy_i - 1: copy_last's next value is
                                        # copy_rem == 0 (timing: no adder before the compare)
        in_word = Signal(range(max_unit))
        word_i = Signal(16)
        d_valid, d_last = Signal(), Signal()
        d_addr = Signal.like(self.waddr)
        e_valid, e_last, e_addr = Signal(), Signal(), Signal.like(self.waddr)
        e_byte = Signal(8, reset_less=True)     # (no reset: it can be the block RAM's register)
        offset = Signal.like(self.offset)
        acc = Signal(8 * max_unit)
        f_valid, f_word, f_addr = Signal(), Signal(8 * max_unit), Signal.like(self.waddr)
        g_valid, g_word, g_addr = Signal(), Signal(8 * max_unit), Signal.like(self.waddr)

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

        m.d.sync += self.wen.eq(0)
        # A copy's registers load with ``start`` whatever the state (timing: ``start`` comes
        # only while idle).
        with m.If(self.start):
            m.d.sync += [sel.eq(self.sel), unit_mask.eq(self.unit_mask),
                         offset.eq(self.offset), copy_i.eq(0),
                         copy_last.eq(~self.length_nz), copy_rem.eq(self.length - 1),
                         in_word.eq(0), word_i.eq(0), d_valid.eq(0), e_valid.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "COPY"
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
                    # (iCE40: the registered store write straight from stage e.)
                    w_valid, w_word, w_addr = e_valid & e_last, nxt, e_addr
                    w_flags = [[_sat_flags(value, bits) for value, bits in fields]
                               for fields in sat_fields(nxt)]
                with m.If(w_valid):
                    m.d.sync += self.waddr.eq(w_addr)
                    for store, ((_, _, unit, _), flags, fields) in enumerate(
                            zip(device_loads, w_flags, sat_fields(w_word), strict=True)):
                        w_in = w_word[aw - 8 * unit:]
                        if fields:
                            w_in = Cat(*(_saturated(value, bits, hi, lo)
                                         for (hi, lo), (value, bits) in zip(flags, fields,
                                                                            strict=True)))
                        with m.If(sel[store]):
                            m.d.sync += [self.wdata.eq(w_in), self.wen[store].eq(1)]
                with m.If(last_i & ~d_valid & ~e_valid & ~f_valid & ~g_valid):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
