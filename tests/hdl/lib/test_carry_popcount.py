# amaranth: UnusedElaboratable=no
"""The ECP5 carry-chain count (``hdl/lib/carry_popcount.py``): its plan's cost, and its ``CCU2C``
instances proved equal to the equations the simulator runs (Yosys's SAT solver, with Yosys's own
model of the cell); a wrong INIT is caught. The element's results are simulated against the
model in ``tests/hdl/core/test_pe_array.py``; the ECP5 array with its operand copies is proved equal
to the simulated array with the same copies."""

import pytest
from amaranth.hdl import Cat, Const, Mux, Signal

from onebit.hdl.core.array import ComputeArray
from onebit.hdl.core.pe import ProcessingElement
from onebit.hdl.lib import carry_popcount
from onebit.hdl.lib.carry_popcount import EXTRACT, FOLD2, PLAIN, CarryChain, Half, inject, plan
from onebit.host.core_config import CoreConfig
from onebit.sim.formal import prove_equivalent

CELLS = ["ecp5/common_sim.vh", "ecp5/ccu2c_sim.vh"]


def test_plan_costs():
    # In halves: a pair of lanes takes two (FOLD2, EXTRACT), a third lane rides free as the
    # INJECT that replaces the EXTRACT before it; 31 lanes take 41 (1.32 LUT4 a lane).
    assert (plan(2).cost, plan(3).cost, plan(31).cost, plan(32).cost) == (2, 2, 41, 49)
    assert all(plan(n).lanes == n and plan(n).width == n.bit_length() for n in range(2, 70))
    with pytest.raises(ValueError, match="needs at least 2 lanes, not 1"):
        plan(1)


def test_chains_share_one_carry_chain():
    a, b, c, d = (Signal(name=n) for n in "abcd")
    chain = CarryChain("t")
    first = chain.add([inject(a, b), Half(FOLD2, a, b, c, d), Half(EXTRACT)])
    assert chain.halves == 3
    # An INJECT after an EXTRACT takes its place (its sum is the carry in), ...
    second = chain.add([inject(c, d), Half(PLAIN, a, b, a, b)])
    assert chain.halves == 4 and len(first) == 3 and len(second) == 2
    # ... a chain that needs carry 0 after one without an EXTRACT gets a break half.
    chain.add([Half(PLAIN, c, d, c, d)])
    assert chain.halves == 6


def _element(lanes, stages, primitives):
    return ProcessingElement(lanes=lanes, acc_width=(4 * lanes).bit_length(), stages=stages,
                             count="chains", primitives=primitives)


@pytest.mark.synth
@pytest.mark.parametrize("lanes, stages", [(4, 1), (8, 2), (32, 2)])
def test_instances_equal_the_simulated_equations(lanes, stages):
    ok, log = prove_equivalent(_element(lanes, stages, False), _element(lanes, stages, True),
                               f"chains_{lanes}_{stages}", cells=CELLS, steps=stages + 2)
    assert ok, log[-3000:]


@pytest.mark.synth
def test_a_wrong_model_is_caught(monkeypatch):
    # A plausible misreading of the cell: the carry's G taken from INIT[15:12], not INIT[3:0].
    def misread(init, a, b, c, d, cin):
        return real(init, a, b, c, d, cin)[0], Mux(
            Const(init, 16).bit_select(Cat(a, b, c, d), 1), cin,
            Const(init >> 12, 4).bit_select(Cat(a, b), 1))

    real = carry_popcount._model
    monkeypatch.setattr(carry_popcount, "_model", misread)
    ok, log = prove_equivalent(_element(8, 2, False), _element(8, 2, True), "chains_mutant",
                               cells=CELLS, steps=4)
    assert not ok and "proof did fail" in log, log[-3000:]


@pytest.mark.synth
@pytest.mark.parametrize("rows, cols, lanes", [(2, 2, 8), (2, 1, 16)])
def test_ecp5_array_equals_the_simulated_array(rows, cols, lanes):
    # The ECP5 array (chains and operand copies as CCU2C and TRELLIS_FF cells) against the
    # simulated one with the same copies (LUT tree, Amaranth registers).
    cfg = CoreConfig(rows=rows, cols=cols, lanes=lanes, max_k=4 * lanes)
    gold, gate = ComputeArray(cfg, copies=True), ComputeArray(cfg, family="ecp5")
    assert gate.copies() and gate.latency() == gold.latency()
    ok, log = prove_equivalent(gold, gate, f"array_{rows}x{cols}x{lanes}", cells=CELLS,
                               steps=gold.latency() + 2)
    assert ok, log[-3000:]
