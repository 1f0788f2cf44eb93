"""GemmCore in Verilog on Icarus and Verilator through cocotb: random shapes (K up to 2048),
both ops, activations of 1-4 bits as planes on a core that takes them, random thresholds,
random idle cycles on every source and backpressure on the sink, reset in the middle of a
command, and a rejected command; all exact against the golden model."""

import pytest

from onebit.host.core_config import CoreConfig
from onebit.sim.cocotb_runner import run_gemm_tb, run_membank_tb
from onebit.sim.toolchain import SIMULATORS

CONFIGS = {
    # T, N not multiples of the array; K from 1 to 2048 with 32 lanes.
    "3x5x32-k2048": (CoreConfig(rows=3, cols=5, lanes=32, max_k=2048, max_t=11, max_n=23),
                     dict(cases=6, idle=0.3, stall=0.3)),
    "2x3x8": (CoreConfig(rows=2, cols=3, lanes=8, max_k=70, max_t=9, max_n=20),
              dict(cases=12, idle=0.5, stall=0.6)),
    "4x2x16": (CoreConfig(rows=4, cols=2, lanes=16, max_k=200, max_t=13, max_n=9),
               dict(cases=10, idle=0.1, stall=0.0)),
    # Activations of 1-4 bits as planes (K up to 512 at A = 4).
    "2x3x32-A4": (CoreConfig(rows=2, cols=3, lanes=32, max_k=2048, max_t=7, max_n=11,
                             max_bits=4),
                  dict(cases=10, idle=0.3, stall=0.4)),
}


@pytest.mark.parametrize("sim", [pytest.param(s, marks=pytest.mark.slow) if s == "verilator" else s
                                 for s in SIMULATORS])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gemm_cocotb(sim, name):
    cfg, opts = CONFIGS[name]
    assert run_gemm_tb(sim, cfg, seed=len(name), **opts) == 3


def test_gemm_cocotb_spram_weights():
    """The iCE40 SPRAM weight buffer (SB_SPRAM256KA, Yosys's simulation model) on Icarus."""
    cfg = CoreConfig(rows=2, cols=2, lanes=16, max_k=100, max_t=9, max_n=11,
                     weight_memory="ice40_spram")
    assert run_gemm_tb("icarus", cfg, seed=5, cases=10, idle=0.4, stall=0.4) == 3


@pytest.mark.parametrize("width, depth", [(16, 49152), (24, 20000), (8, 300)])
def test_spram_bank_in_depth_on_icarus(width, depth):
    """SPRAM blocks side by side and deep (49152 x 16: the reference layer's 786 Kbit)."""
    assert run_membank_tb(width=width, depth=depth, seed=width) == 1
