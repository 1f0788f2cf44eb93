"""Give a memory's ``no_rw_check`` attribute its meaning in Amaranth's RTLIL.

A memory marked ``attrs={"no_rw_check": 1}`` promises that its users never rely on what a read
returns in the cycle a write goes to the same address. Yosys honours the attribute when it infers
memories from Verilog, but Amaranth's RTLIL states every read port's collision behaviour
explicitly (``COLLISION_X_MASK = 0``: the old word), and Yosys keeps that; it then builds a
bypass (a register of the written word, an address compare and a multiplexer) behind the block
RAM to return the old word on a collision. That multiplexer sits between the block's output and
every register behind it (on ECP5 it keeps the register from becoming the block's own output
register, ``onebit.flow.ecp5_outreg``), and costs logic cells on the nearly full iCE40 UP5K.

:func:`apply_no_rw_check` sets ``COLLISION_X_MASK`` to all ones on the read ports (``$memrd_v2``)
of the memories so marked, and on no others; the build applies it to the design's RTLIL before
synthesis. Simulation (Amaranth's simulator, the Verilog simulators) is unaffected: there a read
still returns the old word, and the design's tests check that no result depends on a colliding
read (each marked memory's docstring says why none can).
"""

from __future__ import annotations

import re

__all__ = ["apply_no_rw_check"]

_MODULE = re.compile(r"^module .*?^end$", re.MULTILINE | re.DOTALL)
_MARKED = re.compile(r"^\s+attribute \\no_rw_check 1\n(?:\s+attribute .*\n)*\s+memory .* (\S+)$",
                     re.MULTILINE)
_READ = re.compile(r"^\s+cell \$memrd_v2 .*?^\s+end$", re.MULTILINE | re.DOTALL)
_MEMID = re.compile(r'^\s+parameter \\MEMID "(.*)"$', re.MULTILINE)
_MASK = re.compile(r"^(\s+parameter \\COLLISION_X_MASK )(\d+)'([01x]+)$", re.MULTILINE)


def apply_no_rw_check(text: str) -> tuple[str, int]:
    """Return ``text`` (RTLIL) with the read ports of ``no_rw_check`` memories marked
    collision-X, and the number of read ports changed."""
    changed = 0

    def module(mo: re.Match) -> str:
        marked = set(_MARKED.findall(mo.group(0)))

        def read_port(cell: re.Match) -> str:
            nonlocal changed
            memid = _MEMID.search(cell.group(0))
            if memid is None or memid.group(1).replace("\\\\", "\\") not in marked:
                return cell.group(0)
            new = _MASK.sub(lambda m: f"{m.group(1)}{m.group(2)}'{'1' * int(m.group(2))}",
                            cell.group(0))
            changed += new != cell.group(0)
            return new

        return _READ.sub(read_port, mo.group(0)) if marked else mo.group(0)

    return _MODULE.sub(module, text), changed
