"""What the build does to the design between Amaranth and nextpnr: Yosys commands after reading
the design (one-hot state machines), the iCE40 LUT mapping against routed delays, and the
netlist passes on Yosys's JSON output (``ecp5_outreg``) in the build script."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ONE_HOT_FSMS", "ICE40_WIRE_PS", "ice40_synth_overrides", "NETLIST_PASSES",
           "add_netlist_passes", "pass_sources"]

#: Yosys commands after reading the design: the state machines' registers lose their initial
#: values, so that Yosys's ``fsm`` pass takes them and recodes them one-hot (a state test is
#: then one flip-flop, not a decode of five). Their values at start-up still come from the
#: ``sync`` domain's reset, which ``ClockReset`` holds until the PLL locks. Measured on the
#: ULX3S-25F: 132.7 and 134.0 MHz over two placement seeds against 127.2 and 130.8, with 145
#: fewer LUT4; on the iCEBreaker, with the processor's opcode flags: 37.0 MHz with seeds 1
#: and 2 against 34.9 and 34.2, 25 fewer logic cells (``docs/build.md``).
ONE_HOT_FSMS = "setattr -unset init w:*fsm_state* w:*_state"

#: ABC9's wire delay (ps a connection) for iCE40 LUT mapping. ``synth_ice40`` maps with
#: ``abc9 -W 250``, while a routed hop on the nearly full UP5K takes 1.5-3 ns in nextpnr's
#: timing; at 250 ps a LUT level looks cheap beside a carry chain, so ABC9 let control paths
#: grow to the depth of the longest chain (7-8 LUT levels). At 1500 ps it keeps them
#: shallow, for about the same cell count (``docs/build.md``, "LUT mapping against routed
#: delays").
ICE40_WIRE_PS = 1500


def ice40_synth_overrides(wire_ps: int = ICE40_WIRE_PS) -> dict[str, str]:
    """Amaranth build overrides that run ``synth_ice40`` with its LUT mapping step
    (``map_luts``) done by ``abc9 -W wire_ps`` instead of ``-W 250``, the rest as it is."""
    return {
        "synth_opts": "-run :map_luts",
        "script_after_synth": "\n".join([
            "read_verilog -D ICE40_HX -icells -lib -specify +/ice40/abc9_model.v",
            f"abc9 -W {wire_ps}", "ice40_wrapcarry -unwrap", "techmap -map +/ice40/ff_map.v",
            "clean", "opt_lut -tech ice40", "synth_ice40 -top top -run map_cells:"]),
    }


#: Netlist passes between Yosys and nextpnr, per family: modules run as ``python -m``.
NETLIST_PASSES = {"ecp5": ("ecp5_outreg",)}


def add_netlist_passes(script: Path, family: str) -> None:
    """Run the family's netlist passes on ``top.json`` in Amaranth's build script, between
    synthesis and place and route."""
    lines = script.read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith('"$NEXTPNR_'))
    passes = [f'"$PYTHON" -m {__package__}.{name} top.json\n'
              for name in NETLIST_PASSES.get(family, ())]
    script.write_text("".join(lines[:at] + passes + lines[at:]))


def pass_sources(family: str) -> list[bytes]:
    """The source of each of ``family``'s netlist passes (a changed pass is a changed build)."""
    return [(Path(__file__).parent / f"{name}.py").read_bytes()
            for name in NETLIST_PASSES.get(family, ())]
