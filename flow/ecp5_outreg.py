"""Pack the flip-flops behind ECP5 block RAM outputs into the blocks' own output registers.

Yosys maps memories to ``DP16KD`` blocks without their output register (``REGMODE = NOREG``),
so every read pays the block's clock-to-out, 5.6-5.8 ns on a speed-6 part, before any routing.
Where the design registers a read port's data right behind the block (each data bit into the
D input of one flip-flop and nothing else; the flip-flops on the port's clock, without reset,
initialised to 0, all with one enable, inverted or not), those flip-flops are the block's
output register (``REGMODE = OUTREG``, enable ``OCE``, cleared at configuration) built in the
fabric. This pass moves them inside: the port's ``DO`` pins drive the flip-flops' output nets,
``OCE`` (through its inverter, ``OCExMUX = INV``, if theirs was inverted) takes their enable,
the flip-flops are deleted. Cycle for cycle the netlist computes what it computed before.

A port is left as it is when any of its data bits feeds logic, feeds more than one cell or a
top-level port, when a flip-flop is on another clock or an inverted one, has a set/reset input
that is not constant 0, an initial value of 1 or an enable different from its neighbours', or
when the block uses the port's reset (``RST``: with ``OUTREG`` it would clear the register, not
the read). A 36-bit port (pseudo dual-port mode: data on ``DOA`` and ``DOB``, read on port B's
clock) counts as one port of 36 bits, with ``OCEA`` and ``OCEB`` both given the enable.

The pass runs on Yosys's JSON netlist between synthesis and nextpnr:
``python -m onebit.flow.ecp5_outreg top.json`` rewrites the file and prints what it packed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PackResult", "pack_output_registers"]


@dataclass
class PackResult:
    """What :func:`pack_output_registers` did: ports packed (``"cell:A"`` to the number of
    flip-flops moved in) and ports left as they are (to the reason)."""

    packed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def flip_flops(self) -> int:
        return sum(self.packed.values())

    def summary(self) -> str:
        lines = [f"ecp5_outreg: {self.flip_flops} flip-flops packed into the output registers "
                 f"of {len(self.packed)} block RAM ports; {len(self.skipped)} read ports left "
                 f"as they are"]
        lines += [f"  left: {port}: {why}" for port, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def _param(cell: dict, name: str, default: str = "") -> str:
    # Yosys marks a string parameter that looks like a binary number with a trailing space.
    return str(cell["parameters"].get(name, default)).rstrip()


def _width(cell: dict, name: str) -> int:
    value = _param(cell, name, "18")
    return int(value, 2) if set(value) <= {"0", "1"} and len(value) > 8 else int(value)


def _plan_port(cells: dict, sinks: dict, top_bits: set, ram: dict, clock_letter: str,
               outputs: tuple[str, ...]) -> tuple[list[tuple[str, str]], object] | str:
    """The (DO pin, flip-flop) pairs and the common enable for one read port, or a reason."""
    if _param(ram, f"CLK{clock_letter}MUX", f"CLK{clock_letter}") != f"CLK{clock_letter}":
        return "inverted clock"
    clock = ram["connections"].get(f"CLK{clock_letter}", ["0"])[0]
    pairs: list[tuple[str, str]] = []
    enables = set()
    for letter in outputs:
        if ram["connections"].get(f"RST{letter}", ["0"]) != ["0"]:
            return f"the block's reset RST{letter} is in use"
        for i in range(18):
            pin = f"DO{letter}{i}"
            bits = ram["connections"].get(pin)
            if not bits or not isinstance(bits[0], int) or not sinks.get(bits[0]):
                continue
            bit = bits[0]
            if bit in top_bits:
                return f"{pin} is a top-level port"
            if len(sinks[bit]) != 1:
                return f"{pin} feeds {len(sinks[bit])} cells"
            name, port = sinks[bit][0]
            ff = cells[name]
            if ff["type"] != "TRELLIS_FF" or port != "DI":
                return f"{pin} feeds {ff['type']}.{port}"
            conn = ff["connections"]
            if _param(ff, "CLKMUX", "CLK") != "CLK" or conn.get("CLK", [None])[0] != clock:
                return f"{pin}'s flip-flop is on another clock"
            if conn.get("LSR", ["0"]) != ["0"] or _param(ff, "LSRMUX", "LSR") != "LSR":
                return f"{pin}'s flip-flop has a set or reset"
            if _param(ff, "REGSET", "RESET") != "RESET":
                return f"{pin}'s flip-flop starts at 1"
            cemux = _param(ff, "CEMUX", "1")
            if cemux == "1" or conn.get("CE", ["1"]) == ["1"]:
                enables.add(("1", False))
            elif cemux in ("CE", "INV"):
                enables.add((conn["CE"][0], cemux == "INV"))
            else:
                return f"{pin}'s flip-flop has enable mode {cemux!r}"
            pairs.append((pin, name))
    if not pairs:
        return "no data bit is used"
    if len(enables) > 1:
        return "its flip-flops have different enables"
    return pairs, enables.pop()


def pack_output_registers(netlist: dict, top: str = "top") -> PackResult:
    """Move registers behind ``DP16KD`` read ports of module ``top`` into the blocks (in place)."""
    module = netlist["modules"][top]
    cells = module["cells"]
    top_bits = {b for p in module["ports"].values() for b in p["bits"] if isinstance(b, int)}
    sinks: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for name, cell in cells.items():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if directions.get(port) != "output":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks[bit].append((name, port))
    result = PackResult()
    for name in sorted(n for n, c in cells.items() if c["type"] == "DP16KD"):
        ram = cells[name]
        if 36 in (_width(ram, "DATA_WIDTH_A"), _width(ram, "DATA_WIDTH_B")):
            ports = [("B", ("A", "B"))]
        else:
            ports = [("A", ("A",)), ("B", ("B",))]
        for clock_letter, outputs in ports:
            key = f"{name}:{clock_letter}"
            if any(_param(ram, f"REGMODE_{x}", "NOREG") != "NOREG" for x in outputs):
                continue
            plan = _plan_port(cells, sinks, top_bits, ram, clock_letter, outputs)
            if isinstance(plan, str):
                if plan != "no data bit is used":
                    result.skipped[key] = plan
                continue
            pairs, enable = plan
            for pin, ff in pairs:
                ram["connections"][pin] = cells[ff]["connections"]["Q"]
                del cells[ff]
            net, inverted = enable
            for x in outputs:
                ram["parameters"][f"REGMODE_{x}"] = "OUTREG"
                ram["connections"][f"OCE{x}"] = [net]
                ram["parameters"][f"OCE{x}MUX"] = "INV" if inverted else f"OCE{x}"
            result.packed[key] = len(pairs)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m onebit.flow.ecp5_outreg NETLIST.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    netlist = json.loads(path.read_text())
    tops = [n for n, m in netlist["modules"].items()
            if str(m.get("attributes", {}).get("top", "0")).strip("0 ")]
    if len(tops) != 1:
        print(f"ecp5_outreg: {path} has {len(tops)} top modules, not one", file=sys.stderr)
        return 1
    result = pack_output_registers(netlist, tops[0])
    tmp = path.with_suffix(".outreg.tmp")
    tmp.write_text(json.dumps(netlist))
    tmp.replace(path)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
