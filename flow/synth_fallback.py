"""Synthesis that survives Yosys's internal assertions in its ABC9 step.

Yosys 0.70 (YoWASP) fails an internal assertion on some netlists while it reintegrates ABC9's
LUT mapping into the design (``abc_ops_reintegrate``: ``GetSize(conn.first) ==
GetSize(conn.second)`` or ``count_id(wire->name) == 0`` in ``kernel/rtlil.cc``): a Yosys bug,
which moves with any change of the design (the ULX3S-25F at 4 x 4 x 32 and the ULX3S-85F's
engine after some timing changes hit it; ABC9 with another wire delay fails the same way).
The build script then synthesises again with the LUT mapping done by classic ABC
(``top.alt1.ys``: ``abc -lut``; 26,669 LUT4 against ABC9's 22,851 on the ULX3S-85F's design,
and more wide-LUT muxes).

Only a failed assertion moves to the fallback; any other Yosys error ends the build as it
did. The script that made the netlist is written to ``synthesis.txt`` (the report's
``synthesis``), and the log of the failed attempt is kept as ``top.0.rpt``.
"""

from __future__ import annotations

import re

__all__ = ["with_synth_fallbacks", "FALLBACK_MAPPERS", "USED_FILE", "ASSERTION"]

#: The mapping commands tried after the board's own, per family.
FALLBACK_MAPPERS = {"ecp5": ("abc -lut 4:7 -dress",), "ice40": ("abc -lut 4 -dress",)}
#: What a failed internal assertion prints in Yosys's log.
ASSERTION = "ERROR: Assert"
#: The file the build script writes with the name of the script that synthesised.
USED_FILE = "synthesis.txt"
_YOSYS_LINE = '"$YOSYS" -q -l top.rpt top.ys\n'


def _ecp5_script(ys: str, mapper: str) -> str:
    """``top.ys`` with ``synth_ecp5``'s LUT mapping (``map_luts``) replaced by ``mapper``."""
    match = re.search(r"^\s*synth_ecp5\b([^\n]*)$", ys, flags=re.M)
    if match is None:
        raise ValueError("the ECP5 script has no synth_ecp5 command")
    opts = match.group(1).strip()
    steps = "\n".join([f"synth_ecp5 {opts} -run :map_luts",
                       "techmap -map +/lattice/latches_map.v", mapper, "clean",
                       f"synth_ecp5 {opts} -run map_cells:"])
    return ys[:match.start()] + steps + ys[match.end():]


def _ice40_script(ys: str, mapper: str) -> str:
    """``top.ys`` with its ``abc9 -W`` mapping (``onebit.flow.passes``) replaced by ``mapper``."""
    match = re.search(r"^\s*abc9 -W \d+\s*$", ys, flags=re.M)
    if match is None:
        raise ValueError("the iCE40 script has no abc9 -W mapping")
    return ys[:match.start()] + mapper + ys[match.end():]


def with_synth_fallbacks(files: dict[str, str | bytes], family: str) -> dict[str, str | bytes]:
    """``files`` (Amaranth's build plan) with the fallback scripts ``top.alt<n>.ys`` and a build
    script that runs them in turn after a failed assertion; unchanged for a family without
    fallbacks or a plan without the usual Yosys line."""
    script = files.get("build_top.sh")
    mappers = FALLBACK_MAPPERS.get(family, ())
    if not mappers or not isinstance(script, str) or _YOSYS_LINE not in script:
        return files
    ys = files["top.ys"]
    if isinstance(ys, bytes):
        ys = ys.decode()
    make = _ecp5_script if family == "ecp5" else _ice40_script
    names = ["top.ys"] + [f"top.alt{n}.ys" for n in range(1, len(mappers) + 1)]
    out = dict(files)
    for name, mapper in zip(names[1:], mappers, strict=True):
        out[name] = make(ys, mapper)
    body = _nest(names)
    out["build_top.sh"] = script.replace(_YOSYS_LINE, body)
    return out


def _nest(names: list[str]) -> str:
    """Shell that runs Yosys on each script of ``names`` in turn while the one before failed
    an assertion."""
    def attempt(n: int, indent: str) -> str:
        name = names[n]
        text = (f'{indent}if "$YOSYS" -q -l top.rpt {name}; then\n'
                f'{indent}  echo {name} > {USED_FILE}\n')
        if n + 1 < len(names):
            text += (f'{indent}elif grep -q "^{ASSERTION}" top.rpt; then\n'
                     f'{indent}  mv top.rpt top.{n}.rpt\n'
                     f'{indent}  echo "onebit: Yosys failed an internal assertion with {name}; '
                     f'synthesising again with {names[n + 1]}" >&2\n'
                     + attempt(n + 1, indent + "  "))
        text += f"{indent}else\n{indent}  exit 1\n{indent}fi\n"
        return text
    return attempt(0, "")
