"""Run a board's build script with progress lines for each tool step and phase.

Amaranth's ``build_top.sh`` runs three tools: Yosys (synthesis, log ``top.rpt``), nextpnr
(place and route, log ``top.tim``) and the packer. ``run_build_script`` runs it with ``sh -x``
so that each tool's start shows on the script's output, and follows the two logs while they
grow: each step and phase (technology mapping, packing, placement, routing, bitstream) is
reported once as it starts, with the seconds since the build began, and a long phase says that
it is still running every ``heartbeat`` seconds. The first YoWASP call of a machine compiles
WebAssembly (about 40 s) and ECP5 place and route takes minutes, so a silent build would look
hung.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["STEPS", "PHASES", "phases_in", "router_status", "run_build_script"]

#: The script's tools, recognised on the ``sh -x`` trace of the command that starts them.
STEPS = (("nextpnr", "place and route (nextpnr)"),
         ("icepack", "bitstream (icepack)"),
         ("ecppack", "bitstream (ecppack)"),
         ("yosys", "synthesis (Yosys; the first YoWASP call compiles WebAssembly, ~40 s)"))

#: Phases inside a step: (log file, pattern of the line that starts it, label).
PHASES = (
    ("top.rpt", re.compile(r"^\d+\. Executing SYNTH_\w+ pass"), "synthesis: optimising"),
    ("top.rpt", re.compile(r"^\d+(?:\.\d+)?\. Executing ABC9? pass"), "synthesis: mapping to LUTs"),
    ("top.rpt", re.compile(r"^\d+\.\d+\. Printing statistics"), "synthesis: done"),
    ("top.tim", re.compile(r"^Info: Packing "), "place and route: packing cells"),
    ("top.tim", re.compile(r"^Info: (Creating initial analytic placement|Running main "
                           r"analytical placer)"), "place and route: placement"),
    ("top.tim", re.compile(r"^Info: Running simulated annealing placer"),
     "place and route: placement refinement"),
    ("top.tim", re.compile(r"^Info: (Routing\.\.|Running router2)"), "place and route: routing"),
    ("top.tim", re.compile(r"^Info: Routing complete"), "place and route: timing analysis"),
)


#: nextpnr's router progress lines: router1's table row (iterations, ..., arcs still queued)
#: and router2's iteration line (wires in use, overused wires).
_ROUTER1 = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|", re.MULTILINE)
_ROUTER2 = re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+)", re.MULTILINE)


def router_status(text: str) -> str | None:
    """The router's latest progress in ``text`` (a piece of nextpnr's log), in words, or None
    if it holds no progress line: ``"1,000 iterations, 103,073 arcs queued"`` (router1) or
    ``"iteration 2, 18,392 overused wires"`` (router2)."""
    found = [(m.start(), f"{int(m[1]):,} iterations, {int(m[2]):,} arcs queued")
             for m in _ROUTER1.finditer(text)]
    found += [(m.start(), f"iteration {int(m[1]):,}, {int(m[2]):,} overused wires")
              for m in _ROUTER2.finditer(text)]
    return max(found)[1] if found else None


def phases_in(name: str, text: str) -> list[str]:
    """The labels of ``PHASES`` whose start shows in ``text`` (log file ``name``), in order of
    first appearance, each once."""
    found: dict[str, int] = {}
    for line_no, line in enumerate(text.splitlines()):
        for file, pattern, label in PHASES:
            if file == name and label not in found and pattern.match(line):
                found[label] = line_no
    return sorted(found, key=found.get)


def run_build_script(script: str, folder: Path, env: dict[str, str],
                     progress: Callable[[str], None], *, heartbeat: float = 30.0,
                     poll: float = 0.5) -> tuple[int, str]:
    """Run ``folder/script`` with ``sh -x``; report progress through ``progress``; return the
    exit status and everything the script printed."""
    start = time.monotonic()
    proc = subprocess.Popen(["sh", "-x", script], cwd=folder, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    seen_lines = 0
    offsets = {"top.rpt": 0, "top.tim": 0}
    said: set[str] = set()
    current, since = "starting", start
    routing: str | None = None

    def say(label: str) -> None:
        nonlocal current, since
        said.add(label)
        current, since = label, time.monotonic()
        progress(f"  [{since - start:6.1f} s] {label}")

    while True:
        done = proc.poll() is not None
        for line in lines[seen_lines:]:
            parts = line.split()
            if line.startswith("onebit: "):          # the script's own notes (a fallback)
                progress(f"  [{time.monotonic() - start:6.1f} s] {line.strip()}")
            if len(parts) > 1 and parts[0] == "+":
                command = Path(parts[1]).name
                for tool, label in STEPS:
                    if tool in command and label not in said:
                        say(label)
                        break
        seen_lines = len(lines)
        for name, offset in offsets.items():
            path = folder / name
            if path.exists():
                if path.stat().st_size < offset:     # written anew (a synthesis retried)
                    offset = 0
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                cut = chunk.rfind(b"\n") + 1        # whole lines only
                offsets[name] = offset + cut
                text = chunk[:cut].decode(errors="replace")
                for label in phases_in(name, text):
                    if label not in said:
                        say(label)
                if name == "top.tim":
                    routing = router_status(text) or routing
        if done:
            break
        if time.monotonic() - since >= heartbeat:
            since = time.monotonic()
            detail = f" ({routing})" if routing and current.endswith("routing") else ""
            progress(f"  [{since - start:6.1f} s] ... still {current.split(' (')[0]}{detail}")
        time.sleep(poll)
    reader.join()
    proc.stdout.close()
    progress(f"  [{time.monotonic() - start:6.1f} s] "
             f"{'finished' if proc.returncode == 0 else f'failed (exit {proc.returncode})'}")
    return proc.returncode, "".join(lines)
