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
from dataclasses import replace
from pathlib import Path

from .. import json_output
from ..host.core_config import TABLE_LANES, CoreConfig

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


def measure_cycles(cfg: CoreConfig, sim: str = "verilator", bits: int = 1) -> list[dict]:
    """Run each distinct reference GEMM once on ``sim``; return counters and derived figures.
    With ``bits`` > 1 the XOR products take activations of that many bits (rows of planes;
    their ideal is ``bits`` times the one-bit product's binary operations at peak); the AND
    products (mask times value) stay one-bit, which is all the core computes for them."""
    from ..sim.cocotb_runner import run_gemm_tb

    gemms = reference_gemms()
    planes = [bits if op == "XOR" else 1 for _, _, _, _, op, _ in gemms]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        run_gemm_tb(sim, cfg, idle=0.0, stall=0.0,
                    bench=[[t, n, k, op, a] for (_, t, n, k, op, _), a in zip(gemms, planes,
                                                                             strict=True)],
                    out=str(out))
        rows = json.loads(out.read_text())
    result = []
    for (name, t, n, k, op, reps), a, row in zip(gemms, planes, rows, strict=True):
        ideal = a * cfg.ideal_cycles(t, n, k)
        result.append({"gemm": name, "t": t, "n": n, "k": k, "op": op, "bits": a,
                       "repeats": reps,
                       "cycles": row["busy"], "active": row["active"], "ideal": ideal,
                       "utilization": ideal / row["busy"], "weight_wait": row["weight_wait"],
                       "stall": row["stall"]})
    return result


def measure_logic(cfg: CoreConfig) -> dict:
    """LUT4 and flip-flops per lane of one PE and of the array, on iCE40 and ECP5."""
    from ..flow.boards import board
    from ..flow.synth import ff_count, lut4_count, synth_stats
    from ..hdl.core.array import ComputeArray
    from ..hdl.core.pe import ProcessingElement

    out = {}
    for fam in ("ice40", "ecp5"):
        array = ComputeArray(cfg, family=fam)
        count = array.count()
        pe = synth_stats(ProcessingElement(lanes=cfg.lanes, acc_width=cfg.acc_width,
                                           stages=cfg.pe_stages, count=count,
                                           primitives=count == "chains",
                                           planes=cfg.max_bits > 1), "pe", fam)
        arr = synth_stats(array, "array", fam)
        lanes = cfg.rows * cfg.cols * cfg.lanes
        out[fam] = {
            "pe_lut4_per_lane": lut4_count(pe, fam) / cfg.lanes,
            "pe_ff_per_lane": ff_count(pe) / cfg.lanes,
            "array_lut4_per_lane": lut4_count(arr, fam) / lanes,
            "array_ff_per_lane": ff_count(arr) / lanes,
            "pe_cells": pe, "array_cells": arr,
        }
        if count == "tree" and cfg.pe_stages == 2:
            # The same element with the iCEBreaker's count tables (fewer if it is narrower).
            tables = min(board("icebreaker").device.core.count_tables,
                         cfg.lanes // TABLE_LANES)
            pt = synth_stats(ProcessingElement(lanes=cfg.lanes, acc_width=cfg.acc_width,
                                               stages=2, count=count, tables=tables,
                                               planes=cfg.max_bits > 1), "pe_tables", fam)
            out[fam].update(pe_tables=tables,
                            pe_tables_lut4_per_lane=lut4_count(pt, fam) / cfg.lanes,
                            pe_tables_ff_per_lane=ff_count(pt) / cfg.lanes)
    return out


def run(*, json_out: bool = False, rows: int = 4, cols: int = 8, lanes: int = 32,
        sim: str = "verilator", synth: bool = True, bits: tuple[int, ...] = (1,)) -> int:
    """Print the core's figures (at each activation width of ``bits``, one core of the
    largest); return 0."""
    # (Rows of up to 1024 elements at the largest A: K = 1024 x A chunks' worth.)
    cfg = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=1024 * max(bits), max_t=64,
                     max_n=1024, max_bits=max(bits))
    runs = []
    for a in bits:
        cycles = measure_cycles(cfg, sim, a)
        total = sum(r["cycles"] * r["repeats"] for r in cycles)
        ideal = sum(r["ideal"] * r["repeats"] for r in cycles)
        runs.append({"bits": a, "gemms": cycles, "layer_cycles": total, "layer_ideal": ideal,
                     "layer_utilization": ideal / total})
    report = {"config": cfg.__dict__, "simulator": sim, **runs[0], "precisions": runs}
    if synth:
        # (The logic at the one-bit run's max_k, so that the planes' cost compares directly.)
        report["logic"] = measure_logic(replace(cfg, max_k=1024))
    if json_out:
        print(json_output.dumps(report))
        return 0
    print(f"GEMM core {rows} x {cols} x {lanes} lanes ({rows * cols * lanes} lanes, "
          f"max_bits {cfg.max_bits}), reference layer T=64 D=256 H=4 F=1024, simulated on {sim}, "
          f"results checked exact")
    first = {r["gemm"]: r["cycles"] for r in runs[0]["gemms"]}
    for run_ in runs:
        a = run_["bits"]
        print(f"\nactivations of {a} bit{'s' if a > 1 else ''} (XOR products; "
              f"x: cycles over the {runs[0]['bits']}-bit run's)")
        print(f"{'GEMM':36} {'T':>4} {'N':>5} {'K':>5} {'op':>4} {'A':>2} {'x':>2} "
              f"{'cycles':>8} {'ideal':>8} {'util':>6} {'x':>6}")
        for r in run_["gemms"]:
            print(f"{r['gemm']:36} {r['t']:4} {r['n']:5} {r['k']:5} {r['op']:>4} {r['bits']:2} "
                  f"{r['repeats']:2} {r['cycles']:8} {r['ideal']:8.0f} {r['utilization']:6.1%} "
                  f"{r['cycles'] / first[r['gemm']]:6.2f}")
        print(f"{'whole layer (weighted by repeats)':36} {'':32} {run_['layer_cycles']:8} "
              f"{run_['layer_ideal']:8.0f} {run_['layer_utilization']:6.1%}")
    if synth:
        for fam, v in report["logic"].items():
            print(f"{fam}: PE {v['pe_lut4_per_lane']:.2f} LUT4/lane, "
                  f"{v['pe_ff_per_lane']:.2f} FF/lane; whole array "
                  f"{v['array_lut4_per_lane']:.2f} LUT4/lane, {v['array_ff_per_lane']:.2f} FF/lane")
            if "pe_tables" in v:
                print(f"{fam}: PE with {v['pe_tables']} count tables "
                      f"{v['pe_tables_lut4_per_lane']:.2f} LUT4/lane, "
                      f"{v['pe_tables_ff_per_lane']:.2f} FF/lane")
    return 0
