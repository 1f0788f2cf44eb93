"""The ``onebit`` command line: ``onebit demo``, ``onebit bench ...``."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(seed=args.seed, tokens=args.tokens)


def _bench(args: argparse.Namespace) -> int:
    if args.what == "golden":
        from .bench_golden import run
        return run(json_out=args.json, repeats=args.repeats)
    if args.what == "link":
        from .bench_link import run
        return run(json_out=args.json, frame_bytes=args.frame_bytes, faults=args.faults,
                   d_model=args.d_model)
    from .bench_core import run
    return run(json_out=args.json, rows=args.rows, cols=args.cols, lanes=args.lanes,
               sim=args.sim, synth=not args.no_synth)


def _build(args: argparse.Namespace) -> int:
    from .build import BuildError, build

    try:
        build(args.board, rows=args.rows, cols=args.cols, lanes=args.lanes, json_out=args.json)
    except (BuildError, ValueError) as e:
        print(f"onebit build: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``onebit`` command; return its exit status."""
    parser = argparse.ArgumentParser(prog="onebit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"onebit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate tokens with the default 1-bit model")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random default model")
    demo.add_argument("--tokens", type=int, default=16, help="how many tokens to generate")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="print performance figures")
    bench.add_argument("what", choices=["golden", "core", "link"],
                       help="golden: NumPy golden model time; core: GEMM cycles on the array; "
                            "link: wire efficiency, host packing speed, fault injection")
    bench.add_argument("--json", action="store_true", help="print JSON for machines")
    bench.add_argument("--repeats", type=int, default=5, help="timing repeats (best is kept)")
    bench.add_argument("--rows", type=int, default=4, help="core: array rows")
    bench.add_argument("--cols", type=int, default=8, help="core: array columns")
    bench.add_argument("--lanes", type=int, default=32, help="core: lanes per element")
    bench.add_argument("--sim", choices=["verilator", "icarus"], default="verilator",
                       help="core: simulator")
    bench.add_argument("--no-synth", action="store_true", help="core: skip the synthesis")
    bench.add_argument("--frame-bytes", type=int, default=4096,
                       help="link: data bytes per LOAD frame (the device's staging buffer)")
    bench.add_argument("--d-model", type=int, default=256, help="link: layer width D")
    bench.add_argument("--faults", type=int, default=0,
                       help="link: also run a fault-injection campaign of this many products")
    bench.set_defaults(func=_bench)

    build = sub.add_parser("build", help="build the design into a bitstream for a board")
    build.add_argument("--board", required=True,
                       help="a board of constraints/: icebreaker, ulx3s-25f, ulx3s-85f")
    build.add_argument("--rows", type=int, help="array rows (default: the board's)")
    build.add_argument("--cols", type=int, help="array columns (default: the board's)")
    build.add_argument("--lanes", type=int, help="lanes per element (default: the board's)")
    build.add_argument("--json", action="store_true", help="print the report as JSON")
    build.set_defaults(func=_build)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
