"""A register slice (skid buffer): a stream passed on through registers in both directions.

It cuts a stream's combinational paths for timing: ``o.valid`` and ``o.payload`` come from a
register, and so does ``i.ready`` (high while the skid register is empty), so nothing on one side
reaches the other side's logic in the same cycle.

Contract: every payload taken on ``i`` comes out on ``o`` once, in order; latency one cycle;
full throughput (a beat a cycle while ``o.ready`` stays high); ``i.ready`` falls only after a
cycle in which ``o`` stalled with a beat in flight, so the slice holds at most two beats. Both
sides obey ``lib.stream``'s rules (``o.valid`` never waits for ``o.ready``; a payload holds
until taken).
"""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape):
        try:
            Shape.cast(shape)
        except TypeError as e:
            raise TypeError(f"RegisterSlice shape must be a shape-castable, not {shape!r}") from e
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self._shape)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        take = self.i.valid & ~skid_valid
        with m.If(self.o.ready | ~self.o.valid):
            # The output register is free this cycle: refill it from the skid, else the input.
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += self.o.valid.eq(take)
                with m.If(take):
                    m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(take):
            # The output stalls with a beat: park the new one.
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
