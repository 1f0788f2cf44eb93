"""Write a component's Verilog into the build folder, once per design (cached by content)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from amaranth.back import verilog

from ..paths import BUILD_ROOT

__all__ = ["write_verilog", "write_by_content"]


# Yosys's Verilog kicks every ``always @*`` block at time 0 through a dummy register initialised
# to 0. In Icarus that initialisation races the blocks reaching their ``@*`` (the time-0 race of
# amaranth-lang/amaranth#594), which leaves combinational outputs X until an input changes. A
# second change of the same register at time 1 re-evaluates every block once all are waiting.
_KICK = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$",
                   re.MULTILINE)


def _fix_time0_race(text: str) -> str:
    return _KICK.sub(lambda mo: f"{mo.group(0)}\n{mo.group(1)}initial #1 {mo.group(2)} = 1'h1;",
                     text)


def write_verilog(component, name: str, *, folder: str = "verilog", platform=None) -> Path:
    """Convert ``component`` to Verilog as module ``name``; return the file's path.

    ``platform`` (a board's platform, or None) is what the component elaborates for: with one,
    the family's variants (iCE40 DSP counters and SPRAM, ECP5 carry chains, ...) and their
    primitive cells. The file lives at ``build/<folder>/<name>-<hash of the text>.v``; an
    unchanged design reuses the file (and so the simulator builds keyed on its path).
    """
    text = _fix_time0_race(verilog.convert(component, name=name, platform=platform))
    return write_by_content(text, folder, name)


def write_by_content(text: str, folder: str, name: str, *, suffix: str = ".v") -> Path:
    """Write ``text`` to ``build/<folder>/<name>-<hash of the text><suffix>`` unless it is there
    (atomically: a concurrent reader never sees half a file); return the path."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = BUILD_ROOT / folder / f"{name}-{digest}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path
