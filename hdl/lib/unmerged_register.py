"""Flip-flops that synthesis keeps apart from their twins, for copies that cut a fan-out.

Yosys's ``opt_merge`` merges registers with the same input, clock and enable into one: the
copies of an operand that each feed a group of elements would become one register again, whose
fan-out across the array then sets the paths it starts. It merges only its own generic cells,
so on ECP5 these copies are ``TRELLIS_FF`` cells (reset by the domain's reset over the enable,
like an Amaranth ``sync`` register with an enable). Without a family (simulation, or iCE40,
whose arrays keep shared buses) they are ordinary registers, which Yosys may merge.
"""

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal, Value

__all__ = ["unmerged_registers"]


def unmerged_registers(m: Module, name: str, values: list[Value], en: Value,
                       family: str | None) -> list[Signal]:
    """Register each of ``values`` while ``en`` (one cycle of latency); return the outputs."""
    if family not in (None, "ecp5"):
        raise ValueError(f"Family must be None or 'ecp5', not {family!r}")
    regs = [Signal(name=f"{name}_{i}") for i in range(len(values))]
    for i, (q, d) in enumerate(zip(regs, values, strict=True)):
        if family == "ecp5":
            m.submodules[f"{name}_{i}"] = Instance(
                "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="CE", p_CLKMUX="CLK",
                p_LSRMUX="LSR", p_SRMODE="LSR_OVER_CE", p_REGSET="RESET",
                i_CLK=ClockSignal(), i_LSR=ResetSignal(), i_CE=en, i_DI=d, o_Q=q)
        else:
            with m.If(en):
                m.d.sync += q.eq(d)
    return regs
