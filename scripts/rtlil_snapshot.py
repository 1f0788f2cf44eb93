r"""Write each board's design as the build hands it to Yosys (RTLIL, ``src`` attributes left out),
the whole design and the array alone, into a folder; two checkouts' folders compare with ``cmp``
to show a refactoring left the gateware unchanged::

    .venv/bin/python scripts/rtlil_snapshot.py build/rtlil-before     # on the old checkout
    .venv/bin/python scripts/rtlil_snapshot.py build/rtlil-after      # on the new one
    for f in build/rtlil-before/*.il; do cmp "$f" build/rtlil-after/"${f##*/}"; done

A change that only reorders connections (``wiring.connect`` instead of a loop) renumbers
Amaranth's generated names (``$46``); compare those with the numbers dropped and the lines
sorted: ``cmp <(sed -E 's/\$[0-9]+/$N/g' A.il | sort) <(sed -E 's/\$[0-9]+/$N/g' B.il | sort)``.
"""

import sys
from pathlib import Path

from onebit.flow.boards import boards
from onebit.hdl.board.array_bench_top import ArrayBenchTop
from onebit.hdl.board.top import BoardTop


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, b in sorted(boards().items()):
        for kind in ("whole", "array"):
            top = ArrayBenchTop(b, b.device.core) if kind == "array" else BoardTop(b)
            text = b.platform().prepare(top, name="top").files["top.il"]
            text = text.decode() if isinstance(text, bytes) else text
            text = "\n".join(ln for ln in text.splitlines() if "attribute \\src" not in ln)
            (out / f"{name}-{kind}.il").write_text(text + "\n")
            print(f"{name} {kind}: {len(text)} characters")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/rtlil")
