"""The ``sync`` clock domain of a board design: the board's oscillator, or a PLL from it.

``ice40_pll(f_in, f_out)`` finds SB_PLL40 divider settings the way ``icepll`` does: the PFD
frequency ``f_in / (DIVR + 1)`` in 10..133 MHz, the VCO ``f_pfd * (DIVF + 1)`` in 533..1066 MHz,
``f_out = f_vco / 2**DIVQ``, closest to the target. ``ecp5_pll(f_in, f_out)`` does the same for
the ECP5 EHXPLLL with feedback from CLKOP, as ``ecppll`` does: ``f_out = f_in * CLKFB_DIV /
CLKI_DIV``, the VCO ``f_out * CLKOP_DIV`` in 400..800 MHz, the phase detector's input
``f_in / CLKI_DIV`` at least 3.125 MHz. ``ClockReset`` drives ``sync`` and holds its reset
until the PLL locks (through ``ResetSynchronizer``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import AsyncFFSynchronizer

__all__ = ["Ice40Pll", "ice40_pll", "Ecp5Pll", "ecp5_pll", "ClockReset"]


@dataclass(frozen=True)
class Ice40Pll:
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_out: float


def ice40_pll(f_in: float, f_out: float) -> Ice40Pll:
    """The SB_PLL40 settings whose output is closest to ``f_out``; ``ValueError`` if none is
    within 1%."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = f_vco / (1 << divq)
                if best is None or abs(out - f_out) < abs(best[0] - f_out):
                    best = (out, divr, divf, divq, f_pfd)
    if best is None or abs(best[0] - f_out) > 0.01 * f_out:
        raise ValueError(f"no iCE40 PLL setting makes {f_out / 1e6:g} MHz from "
                         f"{f_in / 1e6:g} MHz within 1%")
    out, divr, divf, divq, f_pfd = best
    filter_range = next(i for i, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 134e6), 1)
                        if f_pfd < top)
    return Ice40Pll(divr, divf, divq, filter_range, out)


@dataclass(frozen=True)
class Ecp5Pll:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: float
    f_out: float


def ecp5_pll(f_in: float, f_out: float) -> Ecp5Pll:
    """The EHXPLLL settings whose CLKOP is closest to ``f_out``; ``ValueError`` if none is
    within 1%."""
    best = None
    for clki_div in range(1, 129):
        if f_in / clki_div < 3.125e6:
            break
        for clkfb_div in range(1, 129):
            out = f_in * clkfb_div / clki_div
            if not 3.125e6 <= out <= 400e6:
                continue
            op_divs = [d for d in range(1, 129) if 400e6 <= out * d <= 800e6]
            if op_divs and (best is None or abs(out - f_out) < abs(best[0] - f_out)):
                best = (out, clki_div, clkfb_div, op_divs[0])
    if best is None or abs(best[0] - f_out) > 0.01 * f_out:
        raise ValueError(f"no ECP5 PLL setting makes {f_out / 1e6:g} MHz from "
                         f"{f_in / 1e6:g} MHz within 1%")
    out, clki_div, clkfb_div, clkop_div = best
    return Ecp5Pll(clki_div, clkfb_div, clkop_div, f_in, out)


class ClockReset(wiring.Component):
    """Create the ``sync`` domain from the board clock: ``clk_in`` directly; or the clock pin
    ``pad`` (the raw port) through an iCE40 PLL (SB_PLL40_PAD, which owns the pin's input);
    or ``clk_in`` through an ECP5 EHXPLLL. ``sync`` stays in reset until the PLL locks, and
    leaves it three cycles later: the lock's two-flip-flop synchronizer, then one register
    that drives the domain's reset (timing: nextpnr may place it among the reset's loads rather
    than beside the PLL at the chip's edge, from where the reset took 4.3 ns of routing to the
    far side of the 25F; some placements still leave it at the edge). The parent defines the
    ``sync`` domain."""

    def __init__(self, *, pll: Ice40Pll | Ecp5Pll | None = None, pad=None):
        if isinstance(pll, Ice40Pll) and pad is None:
            raise ValueError("An iCE40 PLL needs the clock pin's port (pad)")
        self._pll = pll
        self.pad = pad
        super().__init__({})
        self.clk_in = Signal()
        #: The ``sync`` clock (for a clock constraint).
        self.clk = Signal()

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ClockSignal("sync").eq(self.clk)
        locked = Signal()
        if self._pll is None:
            m.d.comb += [self.clk.eq(self.clk_in), locked.eq(1)]
        elif isinstance(self._pll, Ecp5Pll):
            p = self._pll
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{p.f_in / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{p.f_out / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div, p_CLKOP_DIV=p.clkop_div,
                p_CLKOP_CPHASE=p.clkop_div // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                i_CLKI=self.clk_in, i_CLKFB=self.clk, o_CLKOP=self.clk, o_LOCK=locked,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        else:
            p = self._pll
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf, p_DIVQ=p.divq,
                p_FILTER_RANGE=p.filter_range,
                i_PACKAGEPIN=self.pad, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=self.clk, o_LOCK=locked)
        rst_sync = Signal(init=1)
        m.submodules.reset = AsyncFFSynchronizer(~locked, rst_sync, o_domain="sync")
        rst = Signal(init=1, reset_less=True)
        m.d.sync += rst.eq(rst_sync)
        m.d.comb += ResetSignal("sync").eq(rst)
        return m
