"""Reading the tools' logs: Yosys's cell counts, nextpnr's utilisation table, and a failed
build's reason (does not fit, found no legal placement, a tool's error)."""

from __future__ import annotations

import re

from .boards import Board
from .report import CELLS
from .synth_fallback import ASSERTION

__all__ = ["synth_cells", "synth_errors", "over_capacity", "failure", "no_placement",
           "one_line"]

_CELL = re.compile(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", re.MULTILINE)


def synth_cells(log: str) -> dict[str, int]:
    """The primitive cell counts of Yosys's last ``stat`` in ``log`` (the synthesis log
    ``top.rpt``): ``{"SB_LUT4": 3423, "SB_CARRY": 1114, ...}``; the first count of each cell
    type (the design's own, before the hierarchy's repeat of it)."""
    at = log.rfind("Printing statistics")
    cells: dict[str, int] = {}
    if at < 0:
        return cells
    for count, cell in _CELL.findall(log[at:]):
        cells.setdefault(cell, int(count))
    return cells


def synth_errors(log: str) -> str:
    """The ``ERROR`` lines of the synthesis log ``top.rpt`` (Yosys, run with ``-q``, writes
    them there, not to the build's output), one line each, for the build's log."""
    return "".join(f"{ln}\n" for ln in log.splitlines() if ln.startswith("ERROR"))


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def over_capacity(log: str) -> list[tuple[str, int, int]]:
    """The resources nextpnr's utilisation table shows above the device's total."""
    return [(name, int(used), int(total)) for name, used, total in _UTIL.findall(log)
            if int(used) > int(total)]


def one_line(message: str) -> str:
    """A build's failure message on one line, for a table's cell (its lines joined: a failure's
    first line alone says only that the flow failed)."""
    return " ".join(ln.strip() for ln in message.splitlines() if ln.strip())


def failure(log: str, b: Board, returncode: int = 1) -> str:
    over = over_capacity(log)
    if over:
        return f"the design does not fit {b.description}: " + ", ".join(
            f"{name} {used} used of {total}" for name, used, total in dict.fromkeys(over))
    lines = [ln for ln in log.splitlines() if "ERROR" in ln]
    text = "\n".join(dict.fromkeys(lines[-8:]))
    if NO_PLACEMENT.search(log):
        used = [(name, int(n), int(total)) for name, n, total in _UTIL.findall(log)
                if CELLS[b.family].get(name) == "LUT4"]
        at = (f" (nextpnr found no legal placement with {used[0][0]} {used[0][1]} of "
              f"{used[0][2]} in use; a lower clock target or a smaller array may place)"
              if used else "")
        return f"the design does not fit {b.description}{at}:\n{text}"
    if ASSERTION in text:
        text += "\n(an assertion inside Yosys failed: a Yosys bug, not an error in the design)"
    if not text:
        # (No tool said why: a signal or an outside kill, e.g. a timeout around the build.)
        return (f"the {b.family} flow stopped with exit status {returncode} and no error in "
                f"its log; was it interrupted?")
    return f"the {b.family} flow failed:\n{text}"


NO_PLACEMENT = re.compile("Unable to place|Failed to expand region|Unable to find legal placement")


def no_placement(log: str) -> bool:
    """nextpnr found no legal placement (which another placement seed may find)."""
    return bool(NO_PLACEMENT.search(log))
