"""The device's datapath: its stores, the GEMM runner and (with ``DeviceConfig.layer``) the layer
engine, behind the ports the command processor drives.

Stores (read latency 1): activations (``lanes``-bit words, one write enable per ``cols`` bits
for the engine, whole words from the host), weights, thresholds, results, and for the layer
engine the residual store (words of ``cols`` int16) and the parameter store (words of ``cols``
``PARAM_BITS``-bit values, two read ports). The host writes any store through ``st_*`` (one
word a cycle, never while the runner or the engine works); the runner and the engine share the
activation store's read port and the engine's writes go first (they never overlap with the
runner's reads of the same words). The runner serves RUN (``run_*``, results into the result
store) and the engine (``layer_*``), one at a time.
"""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.device_config import PARAM_BITS, DeviceConfig
from ...host.layer_layout import EngineStep, param_read_words
from ..core.gemm_layouts import counters_layout
from ..core.gemm_runner import GemmRunner, run_layout
from ..layer.engine import LayerEngine, layer_layout
from ..lib.banked_store import BankedStore
from ..lib.membank import MemoryBank
from ..lib.run_read_store import RunReadStore
from ..lib.two_read_store import TwoReadStore

__all__ = ["Datapath", "datapath_signature", "DatapathPort", "store_word_bits"]


def store_word_bits(dev: DeviceConfig) -> int:
    """Width of the shared store write data: the widest store word."""
    c = dev.core
    widths = [c.lanes, c.threshold_width]
    if dev.layer is not None:
        widths += [16 * c.cols, PARAM_BITS * c.cols]
    return max(widths)


def datapath_signature(dev: DeviceConfig) -> wiring.Signature:
    """The datapath's ports as the datapath sees them (``In`` from the command processor,
    ``Out`` to it); the processor's are this signature flipped. One definition for both."""
    c = dev.core
    depth = max(dev.act_words, dev.weight_words, dev.thresh_words)
    ports = {
        "st_waddr": In(range(depth)), "st_wdata": In(store_word_bits(dev)),
        "act_wen": In(1), "weight_wen": In(1), "thresh_wen": In(1),
        "res_raddr": In(range(dev.result_beats)), "res_ren": In(1),
        "res_rdata": Out(dev.result_word_bits),
        "run_start": In(1), "run_params": In(run_layout(dev)),
        "run_done": Out(1), "run_error": Out(1),
        "run_beats": Out(range(dev.result_beats + 1)), "core_counters": Out(counters_layout()),
    }
    if dev.layer is not None:
        ly = dev.layer
        ports["st_waddr"] = In(range(max(depth, ly.res_words, ly.param_words)))
        ports.update({
            "resid_wen": In(1), "param_wen": In(1),
            "resid_raddr": In(range(ly.res_words)), "resid_ren": In(1),
            "resid_rdata": Out(16 * c.cols),
            "layer_start": In(1), "layer_params": In(layer_layout()), "clear_cache": In(1),
            "layer_done": Out(1), "layer_status": Out(8),
            "layer_cycles": Out(32), "layer_active": Out(32), "layer_kv_length": Out(16),
            "layer_beats": Out(range(dev.result_beats + 1)),
        })
    return wiring.Signature(ports)


class DatapathPort:
    """A component's datapath-facing ports as one interface (its own signals, signature
    ``signature``), so that ``wiring.connect`` can join the command processor to the
    datapath."""

    def __init__(self, owner: wiring.Component, signature: wiring.Signature):
        self.signature = signature
        for name in signature.members:
            setattr(self, name, getattr(owner, name))


class Datapath(wiring.Component):
    """Members
    -------
    st_waddr, st_wdata;  act_wen, weight_wen, thresh_wen (and resid_wen, param_wen) : In(1)
    res_raddr, res_ren : In;  res_rdata : Out(result_word_bits)
    run_start : In(1);  run_params : In(run_layout(dev))
    run_done, run_error : Out(1);  run_beats : Out;  core_counters : Out(counters_layout())
    With a layer engine: layer_start : In(1);  layer_params : In(layer_layout());
    clear_cache : In(1);  layer_done : Out(1);  layer_status : Out(8);
    layer_cycles, layer_active : Out(32);  layer_kv_length : Out(16);
    layer_beats : Out (the result beats an LM head wrote, the GEMV unit's or the runner's);
    resid_raddr, resid_ren : In;  resid_rdata : Out;  layer_step : Out(EngineStep) (what the
    engine does this cycle, for profiling in simulation; the command processor does not use it)
    """

    def __init__(self, dev: DeviceConfig):
        check_device(dev)
        self._dev = dev
        members = dict(datapath_signature(dev).members)
        if dev.layer is not None:          # (for profiling in simulation; unused on boards)
            members["layer_step"] = Out(EngineStep)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        dev, c = self._dev, self._dev.core
        m.submodules.runner = run = GemmRunner(dev)
        layer = dev.layer is not None
        if layer:
            m.submodules.engine = eng = LayerEngine(dev)

        act = MemoryBank(width=c.lanes, depth=dev.act_words,
                         granularity=c.cols if layer else None)
        if dev.weight_banks > 1:
            stores = {
                # The weight banks' outputs pass their output registers (timing: a block
                # RAM's clock-to-out, then the route to the word mux, limited the 85F).
                # The layer engine's GEMV unit reads lines under a level (``line_mode``): its
                # issue (the output FIFO's credit) no longer reaches the banks' address pins.
                "weight": BankedStore(width=c.lanes, depth=dev.weight_words,
                                      banks=dev.weight_banks, latency=2, line_mode=layer),
                "thresh": BankedStore(width=c.threshold_width, depth=dev.thresh_words,
                                      banks=dev.thresh_banks),
            }
        else:
            stores = {
                "weight": MemoryBank(width=c.lanes, depth=dev.weight_words,
                                     kind=dev.weight_store),
                "thresh": MemoryBank(width=c.threshold_width, depth=dev.thresh_words),
            }
        m.submodules.act_store = act
        for name, bank in stores.items():
            m.submodules[f"{name}_store"] = bank
            m.d.comb += [bank.waddr.eq(self.st_waddr), bank.wdata.eq(self.st_wdata),
                         bank.wen.eq(getattr(self, f"{name}_wen")),
                         bank.raddr.eq(getattr(run, f"{name}_raddr")),
                         bank.ren.eq(getattr(run, f"{name}_ren")),
                         getattr(run, f"{name}_rdata").eq(bank.rdata)]
        all_groups = (1 << (c.lanes // c.cols)) - 1 if layer else 1
        m.d.comb += [act.waddr.eq(self.st_waddr), act.wdata.eq(self.st_wdata),
                     act.wen.eq(Mux(self.act_wen, all_groups, 0)),
                     act.raddr.eq(run.act_raddr), act.ren.eq(run.act_ren),
                     run.act_rdata.eq(act.rdata)]

        m.submodules.result_store = res = MemoryBank(width=dev.result_word_bits,
                                                     depth=dev.result_beats)
        m.d.comb += [res.waddr.eq(run.res_waddr), res.wdata.eq(run.res_wdata),
                     res.wen.eq(run.res_wen), res.raddr.eq(self.res_raddr),
                     res.ren.eq(self.res_ren), self.res_rdata.eq(res.rdata)]

        m.d.comb += [run.start.eq(self.run_start), run.params.eq(self.run_params),
                     self.run_done.eq(run.done), self.run_error.eq(run.error),
                     self.run_beats.eq(run.beats), self.core_counters.eq(run.counters)]
        if not layer:
            return m

        ly = dev.layer
        m.d.comb += [eng.start.eq(self.layer_start), eng.params.eq(self.layer_params),
                     eng.clear_cache.eq(self.clear_cache),
                     self.layer_done.eq(eng.done), self.layer_status.eq(eng.status),
                     self.layer_cycles.eq(eng.cycles), self.layer_active.eq(eng.active),
                     self.layer_step.eq(eng.step),
                     self.layer_kv_length.eq(eng.kv_length), self.layer_beats.eq(run.beats),
                     eng.run_done.eq(run.done), eng.run_error.eq(run.error),
                     eng.run_active.eq(run.counters.active)]
        wiring.connect(m, run.result, eng.run_result)
        if dev.weight_banks > 1:
            # An LM head on the GEMV unit writes the result store itself.
            with m.If(eng.res_wen):
                m.d.comb += [res.waddr.eq(eng.res_waddr), res.wdata.eq(eng.res_wdata),
                             res.wen.eq(1)]
            with m.If(eng.head_gemv):
                m.d.comb += self.layer_beats.eq(eng.head_beats)
            wst, tst = stores["weight"], stores["thresh"]
            m.d.comb += [wst.laddr.eq(eng.w_laddr), wst.lmode.eq(eng.w_lmode),
                         eng.w_ldata.eq(wst.ldata),
                         tst.laddr.eq(eng.th_laddr), tst.lren.eq(eng.th_lren),
                         eng.th_ldata.eq(tst.ldata)]
        with m.If(eng.busy):
            m.d.comb += [run.start.eq(eng.run_start), run.params.eq(eng.run_params)]
        # The activation store: the engine's group writes, or the host's whole words.
        with m.If(eng.act_wen.any()):
            m.d.comb += [act.waddr.eq(eng.act_waddr), act.wdata.eq(eng.act_wdata),
                         act.wen.eq(eng.act_wen)]
        with m.If(eng.act_ren):
            m.d.comb += [act.raddr.eq(eng.act_raddr), act.ren.eq(1)]
        m.d.comb += eng.act_rdata.eq(act.rdata)

        m.submodules.resid_store = resid = MemoryBank(width=16 * c.cols, depth=ly.res_words)
        m.d.comb += [resid.waddr.eq(Mux(eng.resid_wen, eng.resid_waddr, self.st_waddr)),
                     resid.wdata.eq(Mux(eng.resid_wen, eng.resid_wdata, self.st_wdata)),
                     resid.wen.eq(eng.resid_wen | self.resid_wen),
                     resid.raddr.eq(Mux(eng.busy, eng.resid_raddr, self.resid_raddr)),
                     resid.ren.eq(Mux(eng.busy, eng.resid_ren, self.resid_ren)),
                     eng.resid_rdata.eq(resid.rdata), self.resid_rdata.eq(resid.rdata)]

        # The parameter store: the host's writes (only in a LOAD, never while the engine,
        # which reads it, runs a LAYER command) and the engine's two read ports.
        words = param_read_words(dev)
        m.submodules.param_store = params = (
            RunReadStore(width=PARAM_BITS * c.cols, depth=ly.param_words, words=words)
            if words > 1 else TwoReadStore(width=PARAM_BITS * c.cols, depth=ly.param_words))
        m.d.comb += [params.waddr.eq(self.st_waddr), params.wdata.eq(self.st_wdata),
                     params.wen.eq(self.param_wen)]
        # Its ports read every cycle: the engine takes each read's data the cycle after it
        # (timing: the engine's read enables, decided late in a cycle, ran to the block RAMs'
        # clock enables across the chip).
        for i in range(2):
            m.d.comb += [getattr(params, f"raddr{i}").eq(getattr(eng, f"par_raddr{i}")),
                         getattr(params, f"ren{i}").eq(1),
                         getattr(eng, f"par_rdata{i}").eq(getattr(params, f"rdata{i}"))]
        return m
