"""An event counter: flip-flops and an adder, or one iCE40 UltraPlus DSP block.

Contract (both kinds): ``count`` is the number of cycles ``inc`` was high (modulo
``2 ** width``) since the last cycle ``clear`` was high; ``clear`` sets it to 0 (an ``inc`` in
the same cycle is dropped). ``count`` is a register: a cycle's ``inc`` shows the next cycle.
The domain's reset clears it too.

``kind="ice40_dsp"`` builds the counter from one ``SB_MAC16`` as a 32-bit accumulator (its
two 16-bit output registers and adders, the lower adder's carry into the upper one): ``inc``
is the lower adder's input, ``clear`` loads the registers from the (zero) C and D inputs.
The UP5K has eight such blocks and no other use for them, and each 32-bit counter built from
logic cells takes about 32 of its 5,280 (a flip-flop, an adder bit and a carry each).
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["EventCounter", "COUNTER_KINDS", "counter_kind"]

COUNTER_KINDS = ("fabric", "ice40_dsp")


def counter_kind(platform) -> str:
    """The kind for ``platform``: ``"ice40_dsp"`` on an iCE40 UltraPlus (iCE40UP*, which has
    DSP blocks), else ``"fabric"`` (also without a platform, as in simulation)."""
    device = str(getattr(platform, "device", "")).upper()
    return "ice40_dsp" if device.startswith("ICE40UP") else "fabric"


class EventCounter(wiring.Component):
    """A ``width``-bit count of the cycles ``inc`` is high; ``clear`` restarts it at 0.

    Members
    -------
    inc : In(1)
    clear : In(1)
    count : Out(width)
        Registered: latency 1 from ``inc`` and ``clear``.
    """

    def __init__(self, *, width: int = 32, kind: str = "fabric"):
        if kind not in COUNTER_KINDS:
            raise ValueError(f"Counter kind must be one of {', '.join(COUNTER_KINDS)}, "
                             f"not {kind!r}")
        limit = 32 if kind == "ice40_dsp" else None
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0 or (
                limit is not None and width > limit):
            within = f"an integer from 1 to {limit}" if limit else "a positive integer"
            raise ValueError(f"Counter width must be {within} for kind {kind!r}, not {width!r}")
        self._width, self._kind = width, kind
        super().__init__({"inc": In(1), "clear": In(1), "count": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if self._kind == "fabric":
            with m.If(self.clear):
                m.d.sync += self.count.eq(0)
            with m.Elif(self.inc):
                m.d.sync += self.count.eq(self.count + 1)
            return m
        # SB_MAC16, 32-bit accumulator: each half's output register (TOP/BOTOUTPUT_SELECT 1)
        # takes its adder's sum of its lower input (A, B: LOWERINPUT 0) and its own register
        # (UPPERINPUT 0); the lower half's carry in is 0, the upper's the lower's carry out
        # (CARRYSELECT 2). OLOAD takes C and D (0) instead: the clear, synchronous like the
        # fabric's, with the domain's reset folded in (ORST is asynchronous).
        load = Signal()
        o = Signal(32)
        zero16 = Const(0, 16)
        m.d.comb += load.eq(self.clear | ResetSignal())
        m.submodules.mac = Instance(
            "SB_MAC16",
            p_NEG_TRIGGER=Const(0, 1), p_C_REG=Const(0, 1), p_A_REG=Const(0, 1),
            p_B_REG=Const(0, 1), p_D_REG=Const(0, 1),
            p_TOP_8x8_MULT_REG=Const(0, 1), p_BOT_8x8_MULT_REG=Const(0, 1),
            p_PIPELINE_16x16_MULT_REG1=Const(0, 1), p_PIPELINE_16x16_MULT_REG2=Const(0, 1),
            p_TOPOUTPUT_SELECT=Const(1, 2), p_TOPADDSUB_LOWERINPUT=Const(0, 2),
            p_TOPADDSUB_UPPERINPUT=Const(0, 1), p_TOPADDSUB_CARRYSELECT=Const(2, 2),
            p_BOTOUTPUT_SELECT=Const(1, 2), p_BOTADDSUB_LOWERINPUT=Const(0, 2),
            p_BOTADDSUB_UPPERINPUT=Const(0, 1), p_BOTADDSUB_CARRYSELECT=Const(0, 2),
            p_MODE_8x8=Const(0, 1), p_A_SIGNED=Const(0, 1), p_B_SIGNED=Const(0, 1),
            i_CLK=ClockSignal(), i_CE=Const(1, 1),
            i_A=zero16, i_B=Cat(self.inc, Const(0, 15)), i_C=zero16, i_D=zero16,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=load, i_OLOADBOT=load, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=o)
        m.d.comb += self.count.eq(o[:self._width])
        return m

