"""``onebit bench core``: cycles, utilization and logic cost of the GEMM core.

Cycles come from the gateware itself: the reference layer's GEMMs (T=64, D=256, H=4, F=1024)
run on the simulated core (Verilator, or Icarus if asked) with always-valid sources and an
always-ready sink; every result is checked against the golden model, and the core's own
counters give the cycles. Weight loading is included (the core's weight stream runs at one
chunk per cycle); activation loading is included too. Logic cost comes from YoWASP Yosys
``synth_ice40`` / ``synth_ecp5`` of one processing element and of the whole array.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import json_output
from ..host.core_config import CoreConfig

REFERENCE = {"tokens": 64, "d_model": 256, "heads": 4, "d_ff": 1024}


def reference_gemms(t: int = 64, d: int = 256, h: int = 4, f: int = 1024) -> list[tuple]:
    """The GEMMs of one transformer layer: (name, T, N, K, op, repeats)."""
    dh = d // h
    return [
        ("Q/K/V projections (fused, N = 3D)", t, 3 * d, d, "XOR", 1),
        ("output projection O", t, d, d, "XOR", 1),
        ("attention scores Qb.Kb (per head)", t, t, dh, "XOR", h),
        ("context A.Vb (per head)", t, dh, t, "AND", h),
        ("FFN up W1", t, f, d, "XOR", 1),
        ("FFN down W2", t, d, f, "XOR", 1),
    ]


def measure_cycles(cfg: CoreConfig, sim: str = "verilator") -> list[dict]:
    """Run each distinct reference GEMM once on ``sim``; return counters and derived figures."""
    from ..sim.cocotb_runner import run_gemm_tb

    gemms = reference_gemms()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        run_gemm_tb(sim, cfg, idle=0.0, stall=0.0,
                    bench=[[t, n, k, op] for _, t, n, k, op, _ in gemms], out=str(out))
        rows = json.loads(out.read_text())
    result = []
    for (name, t, n, k, op, reps), row in zip(gemms, rows, strict=True):
        ideal = cfg.ideal_cycles(t, n, k)
        result.append({"gemm": name, "t": t, "n": n, "k": k, "op": op, "repeats": reps,
                       "cycles": row["busy"], "active": row["active"], "ideal": ideal,
                       "utilization": ideal / row["busy"], "weight_wait": row["weight_wait"],
                       "stall": row["stall"]})
    return result


def measure_logic(cfg: CoreConfig) -> dict:
    """LUT4 and flip-flops per lane of one PE and of the array, on iCE40 and ECP5."""
    from ..flow.synth import ff_count, lut4_count, synth_stats
    from ..hdl.core.array import ComputeArray
    from ..hdl.core.pe import ProcessingElement

    out = {}
    for fam in ("ice40", "ecp5"):
        array = ComputeArray(cfg, family=fam)
        count = array.count()
        pe = synth_stats(ProcessingElement(lanes=cfg.lanes, acc_width=cfg.acc_width,
                                           stages=cfg.pe_stages, count=count,
                                           primitives=count == "chains"), "pe", fam)
        arr = synth_stats(array, "array", fam)
        lanes = cfg.rows * cfg.cols * cfg.lanes
        out[fam] = {
            "pe_lut4_per_lane": lut4_count(pe, fam) / cfg.lanes,
            "pe_ff_per_lane": ff_count(pe) / cfg.lanes,
            "array_lut4_per_lane": lut4_count(arr, fam) / lanes,
            "array_ff_per_lane": ff_count(arr) / lanes,
            "pe_cells": pe, "array_cells": arr,
        }
    return out


def run(*, json_out: bool = False, rows: int = 4, cols: int = 8, lanes: int = 32,
        sim: str = "verilator", synth: bool = True) -> int:
    """Print the core's figures; return 0."""
    cfg = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=1024, max_t=64, max_n=1024)
    cycles = measure_cycles(cfg, sim)
    total = sum(r["cycles"] * r["repeats"] for r in cycles)
    ideal = sum(r["ideal"] * r["repeats"] for r in cycles)
    report = {"config": cfg.__dict__, "simulator": sim, "gemms": cycles,
              "layer_cycles": total, "layer_ideal": ideal, "layer_utilization": ideal / total}
    if synth:
        report["logic"] = measure_logic(cfg)
    if json_out:
        print(json_output.dumps(report))
        return 0
    print(f"GEMM core {rows} x {cols} x {lanes} lanes ({rows * cols * lanes} lanes), "
          f"reference layer T=64 D=256 H=4 F=1024, simulated on {sim}, results checked exact")
    print(f"{'GEMM':36} {'T':>4} {'N':>5} {'K':>5} {'op':>4} {'x':>2} {'cycles':>8} "
          f"{'ideal':>8} {'util':>6}")
    for r in cycles:
        print(f"{r['gemm']:36} {r['t']:4} {r['n']:5} {r['k']:5} {r['op']:>4} {r['repeats']:2} "
              f"{r['cycles']:8} {r['ideal']:8.0f} {r['utilization']:6.1%}")
    print(f"{'whole layer (weighted by repeats)':36} {'':29} {total:8} {ideal:8.0f} "
          f"{ideal / total:6.1%}")
    if synth:
        for fam, v in report["logic"].items():
            print(f"{fam}: PE {v['pe_lut4_per_lane']:.2f} LUT4/lane, "
                  f"{v['pe_ff_per_lane']:.2f} FF/lane; whole array "
                  f"{v['array_lut4_per_lane']:.2f} LUT4/lane, {v['array_ff_per_lane']:.2f} FF/lane")
    return 0
