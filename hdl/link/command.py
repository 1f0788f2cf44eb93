"""The command processor: checked frames in, store writes and GEMM runs, one response out each.

A sequencer over four components, one command at a time:

1. ``ArgumentDecoder`` takes ``FrameReceiver``'s events: the argument register, the LOAD
   payload into the staging buffer, and after the frame's END (nothing is acted on before its
   CRC matched, so a damaged, truncated or abandoned frame writes nothing) the checks:
   ``UNKNOWN_OPCODE``, ``BAD_LENGTH``, ``OUT_OF_RANGE`` or a go flag.
2. Execute: ``LoadCopy`` copies a LOAD's staged bytes into its store; ``RunSizer`` sizes a
   RUN's regions (``OUT_OF_RANGE`` if they do not fit), then ``GemmRunner`` runs it; LAYER
   starts the layer engine and waits for it; RESET clears the stored results and the link
   counters; CLEAR_CACHE empties the KV cache.
3. ``ReplySender`` answers: header ``opcode | 0x80``, the status byte, the command's tag and the
   data (IDENTIFY: ``encode_identify``; RUN: ``RUN_ANSWER``; LAYER: ``LAYER_ANSWER``;
   READ_RESULTS: the beats' bytes; READ_COUNTERS: ``COUNTERS`` as 32-bit words), all
   little-endian.

Events are not taken while a command executes or its answer is sent (``events.ready`` is a
register, high exactly while the sequencer waits for a frame). The link counters
(``LINK_COUNTERS``) live in a ``CounterBank``.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_device
from ...host.core_config import CORE_COUNTERS
from ...host.device_config import DeviceConfig
from ...host.loads import loads
from ...host.protocol import (
    ARGUMENTS,
    LAYER_ANSWER,
    LAYER_HEAD,
    LINK_COUNTERS,
    RUN_ANSWER,
    Opcode,
    Status,
    encode_identify,
)
from ..lib.counter_bank import CounterBank
from .arguments import ArgumentDecoder, args_view, opcodes
from .datapath import datapath_signature
from .frame_rx import event_layout
from .frame_tx import header_layout
from .load_copy import LoadCopy
from .reply import Reply, ReplySender
from .run_sizer import RunSizer

__all__ = ["CommandProcessor"]


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
        check_device(dev)
        self._dev = dev
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
        dev = self._dev
        layer = dev.layer is not None
        device_loads = loads(dev)
        m.submodules.decoder = dec = ArgumentDecoder(dev)
        m.submodules.copy = copy = LoadCopy(dev, addr_bits=len(self.st_waddr),
                                            word_bits=len(self.st_wdata))
        m.submodules.sizer = sizer = RunSizer(dev)
        m.submodules.reply = reply = ReplySender(dev)
        view = {op: args_view(dec.args, op) for op in opcodes(dev)}
        verdict, go = dec.verdict, dec.verdict.go

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
        with m.If(reply.error):
            m.d.comb += link["errors"].eq(1)

        # The answer: its status, what it carries and how many bytes; the first word a read
        # answers; the RUN and LAYER answers' words. What the result store holds survives a
        # device reset, like the store itself.
        status, kind, length = Signal(8), Signal(Reply), Signal(16)
        read_offset = Signal(16)
        words_sel = Signal()            # 0: run info, 1: counters
        info = [Signal(32, name=f"info{i}") for i in range(len(LAYER_ANSWER))]
        stored_beats = Signal(range(dev.result_beats + 1), reset_less=True)
        stored_thr = Signal(reset_less=True)
        n_words = len(CORE_COUNTERS) + len(LINK_COUNTERS)       # READ_COUNTERS' answer

        def respond(code, what=Reply.NONE, n=0):
            return [status.eq(code), kind.eq(what), length.eq(n)]

        # ``events.ready`` is a register, high exactly while the sequencer is in RECV (timing:
        # the receiver's next step waits on it, and a decoded state is several logic levels).
        recv = Signal(init=1)
        m.d.comb += [
            dec.listen.eq(recv),
            dec.stored_beats.eq(stored_beats), dec.stored_thr.eq(stored_thr),
            # The LOAD copy: its staging buffer fills as the frame arrives.
            copy.stage.eq(dec.stage), copy.sel.eq(verdict.sel),
            copy.unit_mask.eq(verdict.unit_mask),
            # (Every LOAD's arguments are the tag, then the offset.)
            copy.offset.eq(view[device_loads[0][0]].offset),
            copy.length.eq(dec.data_len), copy.length_nz.eq(dec.len_nz),
            self.st_waddr.eq(copy.waddr), self.st_wdata.eq(copy.wdata),
            *(getattr(self, f"{name}_wen").eq(copy.wen[i])
              for i, (_, name, _, _) in enumerate(device_loads)),
            sizer.args.eq(view[Opcode.RUN]),
            # The answer.
            reply.status.eq(status), reply.opcode.eq(dec.opcode),
            reply.tag.eq(view[Opcode.IDENTIFY].tag), reply.kind.eq(kind),
            reply.length.eq(length), reply.offset.eq(read_offset),
            reply.stored_thr.eq(stored_thr), reply.words_sel.eq(words_sel),
            *(reply.info[i].eq(w) for i, w in enumerate(info)),
            reply.core_counters.eq(self.core_counters),
            self.res_raddr.eq(reply.res_raddr), self.res_ren.eq(reply.res_ren),
            reply.res_rdata.eq(self.res_rdata),
            bank.raddr.eq(reply.bank_raddr), bank.ren.eq(reply.bank_ren),
            reply.bank_rdata.eq(bank.rdata),
        ]
        wiring.connect(m, wiring.flipped(self.events), dec.events)
        wiring.connect(m, reply.header, wiring.flipped(self.header))
        wiring.connect(m, reply.data, wiring.flipped(self.data))

        if layer:
            m.d.comb += [self.resid_raddr.eq(reply.resid_raddr),
                         self.resid_ren.eq(reply.resid_ren),
                         reply.resid_rdata.eq(self.resid_rdata)]
            # LAYER starts from a register (timing): high the first cycle of LAYER_WAIT. The
            # parameters are fields of the argument register, steady while the command runs.
            layer_go = Signal()
            m.d.sync += layer_go.eq(0)
            m.d.comb += self.layer_start.eq(layer_go)
            a = view[Opcode.LAYER]
            for name, _ in ARGUMENTS[Opcode.LAYER]:
                if name != "tag":
                    m.d.comb += getattr(self.layer_params, name).eq(getattr(a, name))

        # The copy's ``done``, registered (timing: the copy sits by its staging buffer and the
        # stores, far from this state machine, and ``done`` is logic over its pipeline flags).
        copy_done = Signal()
        m.d.sync += copy_done.eq(copy.done)

        with m.FSM():
            with m.State("RECV"):
                with m.If(dec.end):             # (``listen`` is high here: the END is taken)
                    m.d.sync += recv.eq(0)       # every END leaves RECV
                    with m.If(dec.end_ok):
                        m.d.comb += link["frames"].eq(1)
                        m.next = "CHECK"
                    with m.Elif(dec.end_timed_out):
                        m.d.comb += link["timeouts"].eq(1)
                        m.d.sync += respond(Status.TIMED_OUT)
                        m.next = "REPLY"
                    with m.Else():
                        m.d.comb += link["bad_crc"].eq(1)
                        m.d.sync += respond(Status.BAD_CRC)
                        m.next = "REPLY"

            with m.State("CHECK"):
                with m.If(dec.decided):
                    m.next = "DECIDE"

            with m.State("DECIDE"):
                m.next = "REPLY"
                m.d.sync += respond(verdict.status)
                with m.If(go.load):
                    m.d.comb += copy.start.eq(1)
                    m.next = "COPY"
                with m.If(go.run):
                    m.d.comb += sizer.start.eq(1)
                    m.next = "SIZE"
                with m.If(go.results):
                    m.d.sync += [respond(Status.OK, Reply.RESULTS, verdict.length),
                                 read_offset.eq(view[Opcode.READ_RESULTS].offset)]
                with m.If(go.identify):
                    m.d.sync += respond(Status.OK, Reply.IDENT, len(encode_identify(dev)))
                with m.If(go.counters):
                    m.d.sync += [respond(Status.OK, Reply.WORDS, 4 * n_words), words_sel.eq(1)]
                with m.If(go.reset):
                    m.d.comb += clear_link.eq(1)
                    m.d.sync += stored_beats.eq(0)
                    if layer:
                        m.d.comb += self.clear_cache.eq(1)
                if layer:
                    with m.If(go.residual):
                        m.d.sync += [respond(Status.OK, Reply.RESIDUAL, verdict.length),
                                     read_offset.eq(view[Opcode.READ_RESIDUAL].offset)]
                    with m.If(go.layer):
                        m.d.sync += layer_go.eq(1)
                        m.next = "LAYER_WAIT"
                    with m.If(go.clear_cache):
                        m.d.comb += self.clear_cache.eq(1)

            with m.State("COPY"):
                with m.If(copy_done):
                    m.next = "REPLY"

            with m.State("SIZE"):
                with m.If(sizer.sized):
                    m.next = "LAUNCH"

            with m.State("LAUNCH"):
                m.next = "REPLY"
                with m.If(sizer.over):
                    m.d.sync += status.eq(Status.OUT_OF_RANGE)
                with m.Else():
                    m.d.comb += self.run_start.eq(1)
                    m.next = "RUN"
                m.d.comb += self.run_params.eq(sizer.params)

            with m.State("RUN"):
                with m.If(self.run_done):
                    m.d.sync += [stored_beats.eq(Mux(self.run_error, 0, self.run_beats)),
                                 stored_thr.eq(sizer.params.threshold),
                                 info[0].eq(self.run_beats),
                                 info[1].eq(self.core_counters.busy),
                                 respond(Mux(self.run_error, Status.FAULT, Status.OK),
                                         Reply.WORDS, 4 * len(RUN_ANSWER)),
                                 words_sel.eq(0)]
                    m.next = "REPLY"

            if layer:
                with m.State("LAYER_WAIT"):
                    with m.If(self.layer_done):
                        m.d.sync += [respond(self.layer_status, Reply.WORDS,
                                             4 * len(LAYER_ANSWER)),
                                     info[0].eq(self.layer_cycles),
                                     info[1].eq(self.layer_active),
                                     info[2].eq(self.layer_kv_length), words_sel.eq(0)]
                        with m.If((self.layer_status == Status.OK) &
                                  (view[Opcode.LAYER].flags & LAYER_HEAD).any()):
                            m.d.sync += [stored_beats.eq(self.layer_beats), stored_thr.eq(0)]
                        m.next = "REPLY"

            with m.State("REPLY"):
                m.d.comb += reply.start.eq(1)
                with m.If(reply.done):
                    m.next = "RECV"
        # (Outside the state machine, timing: the sender is done only in REPLY.)
        with m.If(reply.done):
            m.d.sync += recv.eq(1)

        m.d.comb += link["exec"].eq(~recv)
        return m
