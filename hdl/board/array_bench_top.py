"""The compute array alone on a board, for its own logic cost and Fmax (``onebit bench array``).

The whole design's Fmax and LUT4 are dominated by the host link and control logic at the
array sizes that fit; this top measures the array by itself, as a build would for an
out-of-context block. Its operands come from one shift register (one bit a cycle from the
UART's receive pin), which stands for the registered row and column buses that ``GemmCore``
drives: its ``(R + C) * L + 3`` flip-flops feed ``x``, ``w``, ``valid``, ``last`` and ``en``
directly, so no logic sits between them and the array. Every element's ``sum`` has its top
bit taken (it depends on every bit of the accumulator and of the registered count, so
synthesis keeps all of the element) and the top bits are folded by a registered tree of
four-input XORs (one register per level) into the UART's transmit pin.

So the harness adds ``(R + C) * L + 3`` flip-flops and about ``R * C / 3`` LUT4 to the array;
the bench reports the array's own LUT4 from synthesis beside the placed design's totals.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring

from ...host.core_config import CoreConfig
from ..core.array import ComputeArray
from .top import board_clock, uart_pins

__all__ = ["ArrayBenchTop"]


class ArrayBenchTop(wiring.Component):
    """Parameters
    ----------
    board : onebit.flow.boards.Board
        Clock (and PLL) at ``board.target_hz`` and the UART pins used for the operand input
        and the folded output.
    core : CoreConfig
        The array's rows, columns, lanes and accumulator width.
    """

    def __init__(self, board, core: CoreConfig):
        if not isinstance(core, CoreConfig):
            raise TypeError(f"core must be a CoreConfig, not {core!r}")
        self._board, self._core = board, core
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        board_clock(m, platform, self._board)
        c = self._core
        rx_buf, tx_buf = uart_pins(m, platform)

        m.submodules.array = array = ComputeArray(c)
        n_x, n_w = c.rows * c.lanes, c.cols * c.lanes
        chain = Signal(n_x + n_w + 3)
        m.d.sync += chain.eq(Cat(rx_buf.i, chain[:-1]))
        m.d.comb += [array.x.as_value().eq(chain[:n_x]),
                     array.w.as_value().eq(chain[n_x:n_x + n_w]),
                     array.valid.eq(chain[-3]), array.last.eq(chain[-2]),
                     array.en.eq(chain[-1])]

        level = [array.sum[r][col][-1] for r in range(c.rows) for col in range(c.cols)]
        while len(level) > 1:
            folded = []
            for i in range(0, len(level), 4):
                bit = Signal(name=f"fold{len(level)}_{i}")
                m.d.sync += bit.eq(Cat(*level[i:i + 4]).xor())
                folded.append(bit)
            level = folded
        out = Signal()
        m.d.sync += out.eq(level[0])
        m.d.comb += tx_buf.o.eq(out)
        return m
