"""Processing element: ``lanes`` lanes of XOR-popcount into an accumulator."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ...host.checks import check_count
from ...host.core_config import TABLE_LANES
from ..lib.carry_popcount import EXTRACT, FOLD2, CarryChain, Half, inject, plain, plan
from ..lib.family import family
from ..lib.popcount import reduce_columns, register_columns, tree_depth, two_rows
from ..lib.unmerged_register import unmerged_registers

__all__ = ["ProcessingElement"]

TABLE_WIDTH = TABLE_LANES.bit_length()
#: A count table's words: ``popcount(x XOR w)`` of the 5 lanes whose ``x`` and ``w`` address it.
POPCOUNTS = [bin((a ^ (a >> TABLE_LANES)) & ((1 << TABLE_LANES) - 1)).count("1")
             for a in range(1 << (2 * TABLE_LANES))]


class ProcessingElement(wiring.Component):
    """One element of the array (output-stationary: the accumulator stays, operands stream).

    ``stages`` pipeline stages (timing: the popcount tree and the accumulator's adder are in
    different cycles). Each cycle with ``en``, the count ``popcount(x XOR w)`` of the chunk
    presented, with its ``valid`` and ``last``, moves into a register ``c`` (with ``c_valid``,
    ``c_last``; ``c`` is kept as the two rows of the popcount's carry-save tree); with
    ``stages=2`` the tree is cut after about half its levels of full adders and the partial
    columns are registered first, so the count reaches ``c`` one ``en`` cycle later.
    ``sum = acc + c`` (combinational: one level of full adders and one carry chain); and if
    ``c_valid``, ``acc <= c_last ? 0 : sum``. Without ``en`` everything holds. So a row's count
    is ``sum`` in the ``stages``-th ``en`` cycle after its last chunk was presented (latency
    ``stages``: the caller captures it then), and the accumulator starts the next row at zero;
    clearing on ``last`` maps onto the flip-flops' synchronous reset, which a clear on the
    first chunk (``(first ? 0 : acc) + count``) cannot.

    The count of mismatches gives both products of the spec over the K valid bits (padding is
    zero in both operands, so it never mismatches):

    - ``dot(x, w) = K - 2 * acc`` (the XNOR-popcount form ``2 * popcount(XNOR) - K``);
    - ``mdot(p, w) = 2 * popcount(p AND w) - popcount(p) = popcount(w) - acc``, because
      ``popcount(p XOR w) = popcount(p) + popcount(w) - 2 * popcount(p AND w)``.

    So the AND-popcount mode needs no second datapath in the element: the core counts
    ``popcount(w)`` once per weight row as it loads it. (An element with an XOR/AND select costs
    0.5 LUT4 per lane more on iCE40; see ``hdl/lib/popcount.py`` for the measurements.)

    Parameters
    ----------
    lanes : int
        Bits of ``x`` and ``w`` per cycle.
    acc_width : int
        Accumulator width; the caller derives it from the longest row
        (``CoreConfig.acc_width``) so that no row can overflow it.
    stages : int
        1 or 2: register stages before the accumulator (the latency).
    count : str
        ``"tree"``: a carry-save tree of full adders in LUTs (``hdl/lib/popcount.py``), any
        family. ``"chains"`` (at least 4 lanes): ripple adders on ECP5 carry chains with the
        XOR folded in (``hdl/lib/carry_popcount.py``), the accumulator's adder one more chain;
        lowered to ``CCU2C`` cells when the platform is ECP5 (or ``primitives`` is set), else to
        the same cells' equations. Same ports, latency and results.
    primitives : bool
        ``"chains"`` only: emit ``CCU2C`` instances whatever the platform.
    tables : int
        ``"tree"`` with ``stages=2`` only: lanes ``0 .. 5 * tables - 1`` are counted by tables,
        5 lanes each (``TABLE_LANES``): their 10 operand bits address a 1024 x 3 ROM of
        popcounts, read with ``en`` (a block RAM's registered read stands for the cut's
        registers; iCE40: one EBR a table, about 7.5 LUT4 fewer each). Same ports, latency and
        results.
    planes : bool
        Add the ``shift`` tag for bit-plane products (``CoreConfig.max_bits > 1``): a valid
        chunk with ``shift`` (and not ``last``) ends an activation plane, and the accumulator
        takes ``sum << 1`` instead of ``sum``, so a row of planes sent top plane first sums
        to ``sum_i 2^i popcount(p_i XOR w)`` (Horner's rule). Without it, no such logic.

    Members
    -------
    x, w : In(lanes)
    valid, last, en : In(1)
    shift : In(1)  (only with ``planes``)
    acc : Out(acc_width)
    sum : Out(acc_width)
    """

    def __init__(self, *, lanes: int, acc_width: int, stages: int = 1, count: str = "tree",
                 primitives: bool = False, planes: bool = False, tables: int = 0):
        for name, v in (("Lane count", lanes), ("Accumulator width", acc_width)):
            check_count(name, v)
        if acc_width < lanes.bit_length():
            raise ValueError(f"Accumulator width must hold one chunk's count of {lanes}, "
                             f"so be at least {lanes.bit_length()}, not {acc_width}")
        if stages not in (1, 2):
            raise ValueError(f"Pipeline stages must be 1 or 2, not {stages!r}")
        if count not in ("tree", "chains"):
            raise ValueError(f"Count must be 'tree' or 'chains', not {count!r}")
        if count == "chains" and lanes < 4:
            raise ValueError(f"A carry-chain count needs at least 4 lanes, not {lanes}")
        if not isinstance(planes, bool):
            raise TypeError(f"planes must be True or False, not {planes!r}")
        if isinstance(tables, bool) or not isinstance(tables, int) or tables < 0:
            raise ValueError(f"Table count must be a non-negative integer, not {tables!r}")
        if tables and (count != "tree" or stages != 2):
            raise ValueError(f"Table-counted lanes need the two-stage tree count, not "
                             f"count={count!r} with {stages} stage(s)")
        if TABLE_LANES * tables > lanes:
            raise ValueError(f"{tables} tables of {TABLE_LANES} lanes need {TABLE_LANES * tables} "
                             f"lanes; the element has {lanes}")
        self._tables = tables
        self._lanes, self._acc_width, self._stages = lanes, acc_width, stages
        self._count, self._primitives, self._planes = count, primitives, planes
        ports = {
            "x": In(lanes), "w": In(lanes),
            "valid": In(1), "last": In(1), "en": In(1),
            "acc": Out(acc_width), "sum": Out(acc_width),
        }
        if planes:
            ports["shift"] = In(1)
        super().__init__(ports)

    def _update(self, m: Module, en, valid, last, shift) -> None:
        """The accumulator's update: cleared after a row's last chunk, else ``sum`` (or, at a
        plane's end, ``sum << 1``). The clear is a synchronous reset over the enable (no LUT
        a bit where the flip-flops have one)."""
        with m.If(en & valid & last):
            m.d.sync += self.acc.eq(0)
        if shift is not None:
            with m.Elif(en & valid & shift):
                m.d.sync += self.acc.eq(self.sum << 1)
        with m.Elif(en & valid):
            m.d.sync += self.acc.eq(self.sum)

    @property
    def latency(self) -> int:
        """``en`` cycles from a chunk to its count in ``sum``."""
        return self._stages

    def elaborate(self, platform):
        if self._count == "chains":
            ecp5 = family(platform) == "ecp5"
            return self._elaborate_chains(self._primitives or ecp5)
        m = Module()
        aw = self._acc_width
        diff = self.x ^ self.w
        width = self._lanes.bit_length()
        first = TABLE_LANES * self._tables     # lanes below ``first`` are counted by tables
        columns = {0: [diff[i] for i in range(first, self._lanes)]}
        valid, last = self.valid, self.last
        shift = self.shift if self._planes else None
        if self._stages == 2:
            # Cut the tree after half its levels; register the partial columns. With tables,
            # the other lanes' tree runs to its two rows before the cut, beside the tables'
            # read (64 LUT4 for 32 lanes with 4 tables on iCE40, against 65 at half).
            if columns[0]:
                levels = None if self._tables else tree_depth(self._lanes) // 2
                columns = reduce_columns(m, columns, width, "pa", levels=levels)
            columns = register_columns(m, columns, "p", en=self.en)
            for k in range(self._tables):
                # A table of popcount(x XOR w) over TABLE_LANES lanes, addressed by their
                # operands and read with ``en`` (a block RAM's registered read: the cut).
                lo = TABLE_LANES * k
                rom = memory.Memory(shape=TABLE_WIDTH, depth=1 << (2 * TABLE_LANES),
                                    init=POPCOUNTS)
                m.submodules[f"rom{k}"] = rom
                port = rom.read_port(domain="sync")
                m.d.comb += [port.addr.eq(Cat(self.x[lo:lo + TABLE_LANES],
                                              self.w[lo:lo + TABLE_LANES])),
                             port.en.eq(self.en)]
                for b in range(TABLE_WIDTH):
                    columns.setdefault(b, []).append(port.data[b])
            valid, last = Signal(), Signal()
            with m.If(self.en):
                m.d.sync += [valid.eq(self.valid), last.eq(self.last)]
            if shift is not None:
                shift_d = Signal()
                with m.If(self.en):
                    m.d.sync += shift_d.eq(shift)
                shift = shift_d
        # The count is registered as the carry-save tree's two rows (its final adder merges
        # into the accumulator's: one level of full adders, then one carry chain).
        rows = two_rows(reduce_columns(m, columns, width, "pc"), width)
        c0, c1 = Signal(len(rows[0]), name="c0"), Signal(len(rows[1]), name="c1")
        c_valid, c_last = Signal(), Signal()
        a, b, d = self.acc, Signal(aw), Signal(aw)
        m.d.comb += [b.eq(c0), d.eq(c1)]
        m.d.comb += self.sum.eq((a ^ b ^ d) + (((a & b) | (a & d) | (b & d)) << 1)[:aw])
        with m.If(self.en):
            m.d.sync += [c0.eq(rows[0]), c1.eq(rows[1]), c_valid.eq(valid),
                         c_last.eq(last)]
        c_shift = None
        if shift is not None:
            c_shift = Signal()
            with m.If(self.en):
                m.d.sync += c_shift.eq(shift)
        self._update(m, self.en, c_valid, c_last, c_shift)
        return m

    def _elaborate_chains(self, primitives: bool) -> Module:
        m = Module()
        lanes, aw, en = self._lanes, self._acc_width, self.en
        # One lane may start the accumulator's chain (an INJECT half) instead of the count's
        # (costs in halves; the accumulator's chain is its own, padded to whole CCU2C).
        acc_lane = (plan(lanes - 1).cost + 2 * ((aw + 2) // 2)
                    < plan(lanes).cost + 2 * ((aw + 1) // 2))
        root = plan(lanes - acc_lane)
        cut = root.height // 2 if self._stages == 2 else None
        ids = iter(range(lanes))

        def delay(values, n, name, keep=False):
            for k in range(n):
                if keep and primitives:
                    # The same operand's registers in every element of a row or column
                    # would merge into one, whose fan-out across the array then sets the
                    # paths it starts (``hdl/lib/unmerged_register.py``).
                    values = unmerged_registers(m, f"{name}_d{k}", values, en, "ecp5")
                    continue
                regs = [Signal(name=f"{name}_d{k}_{i}") for i in range(len(values))]
                with m.If(en):
                    m.d.sync += [r.eq(v) for r, v in zip(regs, values, strict=True)]
                values = regs
            return values

        def lane(height):
            # A lane's operands, registered once if the chain using them is past the cut.
            i = next(ids)
            late = cut is not None and height > cut
            return delay([self.w[i], self.x[i]], late, f"ln{i}", keep=True)

        def emit(node, tag):
            if not node.parts:
                head = [inject(*lane(node.height))] if node.inject else []
                pair = lane(node.height) + lane(node.height)
                sums = level_chain(node).add(head + [Half(FOLD2, *pair), Half(EXTRACT)])
                return sums[len(head):len(head) + node.width]
            parts = []
            for k, child in enumerate(node.parts):
                bits = emit(child, f"{tag}{k}")
                past = cut is not None and child.height <= cut < node.height
                parts.append(delay(bits, past, f"{tag}{k}r"))
            head = [inject(*lane(node.height))] if node.inject else []
            a, b = parts
            w = max(len(a), len(b))
            halves = [plain(a[k] if k < len(a) else 0, b[k] if k < len(b) else 0)
                      for k in range(w)]
            if node.lanes >= 1 << w:
                halves.append(Half(EXTRACT))
            sums = level_chain(node).add(head + halves)
            return sums[len(head):len(head) + node.width]

        # The adders of each level of the tree collect in one chain (``CarryChain``), and the
        # levels of a pipeline stage follow each other in one physical chain, lowest first:
        # nextpnr adds a feed-in and a feed-out cell to every physical chain. The timing
        # analyser follows the carry through the joints as if it were real, so a chain never
        # holds a child after its parent (a path could then hop from sum to input along every
        # sibling) and never crosses the stage cut (it would join the two stages' paths).
        levels = {}

        def level_chain(node):
            return levels.setdefault(node.height, CarryChain(f"h{node.height}"))

        count = emit(root, "n")
        stages = [CarryChain("lo"), CarryChain("hi")]
        for height in sorted(levels):
            stages[cut is not None and height > cut].extend(levels[height])
        c = [Signal(name=f"c{i}") for i in range(len(count))]
        # valid and last as TRELLIS_FF cells too: plain registers behind the array's
        # TRELLIS_FF copies of them made Yosys 0.70's ABC9 fail an assertion
        # (``GetSize(conn.first) == GetSize(conn.second)``) on the ULX3S-85F's whole design.
        tags = [self.valid, self.last] + ([self.shift] if self._planes else [])
        valid, last, *shift = delay(tags, self._stages, "ctl", keep=True)
        with m.If(en):
            m.d.sync += [r.eq(v) for r, v in zip(c, count, strict=True)]
        head = []
        if acc_lane:
            head = [inject(*delay(lane(0), self._stages, "acc_ln", keep=True))]
        halves = [plain(self.acc[k], c[k] if k < len(c) else 0) for k in range(aw)]
        # The accumulator's adder has a chain of its own: joined to a stage's chain its carry
        # transit lengthens that stage's paths (4 x 4 x 32 and 8 x 8 x 32 on the 25F: 164.6
        # and 140.5 MHz with it first in the first stage's, 143.6 and 139.1 after the second
        # stage's, 171.4 and 148.8 alone, for four more cells an element).
        acc = CarryChain("acc")
        sums = acc.add(head + halves)
        for chain in (acc, *stages):
            if chain.halves:
                chain.emit(m, primitives=primitives)
        m.d.comb += [self.sum[k].eq(sums[len(head) + k]) for k in range(aw)]
        self._update(m, en, valid, last, shift[0] if shift else None)
        return m
