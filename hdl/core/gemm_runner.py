"""Run one GEMM out of the device's stores: the GEMM core fed by stream readers.

``start`` (one cycle) latches ``params`` (``run_layout``): the runner gives the core its command,
streams ``act_count`` activation words from ``act_base``, ``weight_count`` weight words from
``weight_base`` and, with ``threshold``, ``n`` thresholds from ``thresh_base``, and writes the
result beats to the result store from address 0 (``result_word_bits`` wide: ``cols`` results
sign-extended to 16 bits each, or the tile's bits). ``done`` pulses when the last beat is
written; ``error`` with it if the core rejected the command (the command processor checks
every field first, so this is a fault). ``beats`` counts beats written. The caller sizes the
counts (``onebit.host.device_config``) and checks them against the stores.

Store ports: ``*_raddr``/``*_ren``/``*_rdata`` (read latency 1; the weights' 2 when
``weight_banks`` > 1, a ``BankedStore`` with its banks' outputs registered) for activations,
weights and thresholds; ``res_waddr``/``res_wdata``/``res_wen`` for results.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.core_config import Op
from ...host.device_config import DeviceConfig
from ..lib.family import family
from ..lib.stream_reader import MemoryStreamReader
from .gemm import GemmCore
from .gemm_layouts import counters_layout, result_ints_word, result_layout

__all__ = ["GemmRunner", "run_layout"]


def run_layout(dev: DeviceConfig) -> data.StructLayout:
    """A product's command: the core's, with ``stream`` and the stores' regions (and
    ``bits_m1``, the activation bits less one, when the core takes planes)."""
    c = dev.core
    fields = {
        "op": Op, "threshold": 1, "stream": 1,
        "t": range(c.max_t + 1), "n": range(c.max_n + 1), "k": range(c.max_k + 1),
        "act_base": range(dev.act_words), "act_count": range(dev.act_words + 1),
        "weight_base": range(dev.weight_words), "weight_count": range(dev.weight_words + 1),
        "thresh_base": range(dev.thresh_words), "thresh_count": range(dev.thresh_words + 1),
    }
    if c.max_bits > 1:
        fields["bits_m1"] = 2
    return data.StructLayout(fields)


class GemmRunner(wiring.Component):
    """Members
    -------
    start : In(1);  params : In(run_layout(dev))
    done : Out(1);  error : Out(1);  busy : Out(1);  beats : Out(range(result_beats + 1))
    counters : Out(counters_layout())
    act_raddr, act_ren, act_rdata;  weight_raddr, ...;  thresh_raddr, ...
    res_waddr : Out(range(result_beats));  res_wdata : Out(result_word_bits);  res_wen : Out(1)
    result : Out(stream.Signature(result_layout(core)))
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev)
        self._dev = dev
        c = dev.core
        ports = {
            "start": In(1), "params": In(run_layout(dev)),
            "done": Out(1), "error": Out(1), "busy": Out(1),
            "beats": Out(range(dev.result_beats + 1)), "counters": Out(counters_layout()),
            "res_waddr": Out(range(dev.result_beats)), "res_wdata": Out(dev.result_word_bits),
            "res_wen": Out(1),
            "result": Out(stream.Signature(result_layout(c))),
        }
        for name, width, depth in (("act", c.lanes, dev.act_words),
                                   ("weight", c.lanes, dev.weight_words),
                                   ("thresh", c.threshold_width, dev.thresh_words)):
            ports.update({f"{name}_raddr": Out(range(depth)), f"{name}_ren": Out(1),
                          f"{name}_rdata": In(width)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        m.submodules.core = core = GemmCore(c)
        m.d.comb += self.counters.eq(core.counters)
        p = Signal(run_layout(dev))
        readers = {}
        # The stores' words are registered on their way in, except on iCE40, whose UP5K has no
        # logic cells to spare and whose clock is limited elsewhere: there the memories' own
        # outputs hold the words offered, with no FIFO (``stream_reader.py``).
        register = family(platform) != "ice40"
        for name, width, depth, sink in (("act", c.lanes, dev.act_words, core.act),
                                         ("weight", c.lanes, dev.weight_words, core.weight),
                                         ("thresh", c.threshold_width, dev.thresh_words,
                                          core.thresh)):
            # A banked weight store reads with latency 2 (``BankedStore``).
            latency = 2 if name == "weight" and dev.weight_banks > 1 else 1
            rd = readers[name] = MemoryStreamReader(width=width, depth=depth,
                                                    register_output=register or latency == 2,
                                                    latency=latency)
            m.submodules[f"{name}_reader"] = rd
            m.d.comb += [getattr(self, f"{name}_raddr").eq(rd.raddr),
                         getattr(self, f"{name}_ren").eq(rd.ren),
                         rd.rdata.eq(getattr(self, f"{name}_rdata")),
                         rd.base.eq(getattr(p, f"{name}_base")),
                         rd.count.eq(getattr(p, f"{name}_count"))]
            wiring.connect(m, rd.o, sink)

        m.d.comb += [core.cmd.payload.op.eq(p.op), core.cmd.payload.threshold.eq(p.threshold),
                     core.cmd.payload.t.eq(p.t), core.cmd.payload.n.eq(p.n),
                     core.cmd.payload.k.eq(p.k)]
        if c.max_bits > 1:
            m.d.comb += core.cmd.payload.bits_m1.eq(p.bits_m1)

        # Result writer: every beat is written the cycle it arrives.
        r = core.result.payload
        ints = result_ints_word(m, [r.ints[i] for i in range(c.cols)], "res_int")
        addr = Signal(range(dev.result_beats + 1))
        taken = Signal()
        m.d.comb += [self.res_waddr.eq(addr),
                     self.res_wdata.eq(Mux(p.threshold, r.bits, ints)),
                     self.res_wen.eq(core.result.valid & ~p.stream & (addr < dev.result_beats)),
                     self.result.payload.eq(r),
                     self.result.valid.eq(core.result.valid & p.stream),
                     core.result.ready.eq(~p.stream | self.result.ready),
                     taken.eq(core.result.valid & core.result.ready),
                     self.beats.eq(addr)]
        m.d.sync += [self.done.eq(0), self.error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [p.eq(self.params), addr.eq(0)]
                    m.next = "COMMAND"
            with m.State("COMMAND"):
                m.d.comb += [self.busy.eq(1), core.cmd.valid.eq(1)]
                with m.If(core.cmd.ready):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                # The core flags a rejected command the cycle after taking it.
                with m.If(core.cmd_error):
                    m.d.sync += [self.done.eq(1), self.error.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [readers["act"].start.eq(1), readers["weight"].start.eq(1),
                                 readers["thresh"].start.eq(p.threshold)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(taken):
                    m.d.sync += addr.eq(addr + 1)
                    with m.If(r.last):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
        return m
