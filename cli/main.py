"""The ``onebit`` command line: ``onebit demo``, ``onebit bench ...``."""

from __future__ import annotations

import argparse
import json
import sys

from .. import __version__


class _Parser(argparse.ArgumentParser):
    """Bad options end in one line naming the option, exit status 2 (no usage dump, no
    traceback); with ``quantize --json`` that line is one JSON object ``{"error": ...}`` on
    standard output, the command's contract for programs."""

    json_errors = False

    def error(self, message: str):
        text = f"{self.prog}: {message}"
        if _Parser.json_errors:
            print(json.dumps({"error": text}))
        else:
            print(text, file=sys.stderr)
        raise SystemExit(2)


def _integer(low: int, high: int | None = None):
    """An argparse type: an integer in ``low..high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be an integer {span}, not {value}")
        return value
    return parse


_positive = _integer(1)
_non_negative = _integer(0)


def _check_bench(args: argparse.Namespace) -> str | None:
    """Why the bench's options cannot make its device (None if they can), checked before any
    simulation or build starts."""
    from ..flow.boards import boards

    if args.boards:
        unknown = [b for b in args.boards if b not in boards()]
        if unknown:
            return (f"--boards: unknown board {unknown[0]!r}; boards: "
                    f"{', '.join(sorted(boards()))}")
    try:
        if args.what == "core":
            from ..host.core_config import CoreConfig

            CoreConfig(rows=args.rows, cols=args.cols, lanes=args.lanes,
                       max_bits=max(args.bits))
        elif args.what == "layer":
            if args.lanes % args.layer_cols:
                return f"--layer-cols must divide --lanes ({args.lanes}), not {args.layer_cols}"
            from ..bench.layer import reference_device

            reference_device(args.rows, args.layer_cols, args.lanes, decode=args.decode,
                             bits=max(args.bits), ternary=args.weights == "ternary")
        elif args.what == "link":
            from ..bench.link import device

            device(args.frame_bytes, args.d_model)
    except ValueError as e:
        names = {"core": "--rows/--cols/--lanes", "layer": "--rows/--layer-cols/--lanes",
                 "link": "--frame-bytes/--d-model"}[args.what]
        return f"{names}: {e}"
    return None


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    shape = {k: v for k in ("rows", "cols", "lanes") if (v := getattr(args, k)) is not None}
    return run_demo(seed=args.seed, tokens=args.tokens, random=args.random,
                    simulator=args.simulator, board=args.board, shape=shape)


def _bench(args: argparse.Namespace) -> int:
    why = _check_bench(args)
    if why:
        print(f"onebit bench {args.what}: {why}", file=sys.stderr)
        return 2
    if args.what == "golden":
        from ..bench.golden import run
        return run(json_out=args.json, repeats=args.repeats)
    if args.what == "scaling":
        from ..bench.scaling import run
        return run(json_out=args.json, boards=args.boards)
    if args.what == "array":
        from ..bench.array import run
        return run(json_out=args.json, boards=args.boards)
    if args.what == "layer":
        from ..bench.layer import run
        return run(json_out=args.json, rows=args.rows, cols=args.layer_cols, lanes=args.lanes,
                   sim=args.sim or "verilator", decode=args.decode, plot=args.plot,
                   bits=args.bits, weights=args.weights)
    if args.what == "import":
        from ..bench.qonnx_digits import run
        return run(json_out=args.json, simulator=args.sim or "icarus")
    if args.what == "link":
        from ..bench.link import run
        return run(json_out=args.json, frame_bytes=args.frame_bytes, faults=args.faults,
                   d_model=args.d_model, mlp=args.mlp, boards=args.boards)
    from ..bench.core import run
    return run(json_out=args.json, rows=args.rows, cols=args.cols, lanes=args.lanes,
               sim=args.sim or "verilator", synth=not args.no_synth, bits=args.bits)


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers separated by commas, not {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be non-negative, not {text!r}")
    return seeds


def _int_list(low: int, high: int):
    """An argparse type: integers in ``low..high`` separated by commas."""
    one = _integer(low, high)

    def parse(text: str) -> tuple[int, ...]:
        return tuple(one(part) for part in text.split(","))
    return parse


def _kind_list(text: str) -> tuple[str, ...]:
    kinds = tuple(text.split(","))
    bad = [k for k in kinds if k not in ("binary", "ternary")]
    if bad:
        raise argparse.ArgumentTypeError(f"weight kinds are binary or ternary, not {bad[0]!r}")
    return kinds


def _precision_list(text: str) -> tuple[tuple[int, str], ...]:
    """An argparse type: ``A:KIND`` pairs separated by commas (``2:binary,3:ternary``)."""
    out = []
    for part in text.split(","):
        bits, sep, kind = part.partition(":")
        if not sep or bits not in ("1", "2", "3", "4") or kind not in ("binary", "ternary"):
            raise argparse.ArgumentTypeError(
                f"precisions are A:KIND with A in 1..4 and KIND binary or ternary, not {part!r}")
        out.append((int(bits), kind))
    return tuple(out)


def _clock(text: str) -> float:
    try:
        mhz = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MHz, not {text!r}") from None
    if not 1 <= mhz <= 1000:
        raise argparse.ArgumentTypeError(f"must be in 1..1000 MHz, not {text}")
    return mhz


def _clock_list(text: str) -> list[float]:
    return [_clock(part) for part in text.split(",")]


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"give names separated by commas, not {text!r}")
    return names


def _build(args: argparse.Namespace) -> int:
    from ..flow.build import BuildError, BuildRequest, build

    if args.asic:
        import json

        from ..flow.asic import asic_estimate, format_asic
        from ..flow.boards import board

        try:
            core = board(args.board or "ulx3s-25f").device.core.reshaped(
                rows=args.rows, cols=args.cols, lanes=args.lanes)
        except ValueError as e:
            print(f"onebit build: {e}", file=sys.stderr)
            return 2
        r = asic_estimate(core, out=lambda *a: print(*a, file=sys.stderr))
        print(json.dumps(r) if args.json else format_asic(r))
        return 0
    if not args.board:
        print("onebit build: --board is required (or --asic)", file=sys.stderr)
        return 2
    try:
        build(BuildRequest(args.board, rows=args.rows, cols=args.cols, lanes=args.lanes,
                           clock_mhz=args.clock_mhz, rebuild=args.rebuild, seed=args.seed,
                           seeds=args.seeds, router=args.router, jobs=args.jobs),
              json_out=args.json)
    except BuildError as e:                 # the build ran and failed
        print(f"onebit build: {e}", file=sys.stderr)
        return 1
    except ValueError as e:                 # a bad option: nothing was built
        print(f"onebit build: {e}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import run
    if args.precisions and args.compare not in ("precisions", "both"):
        print("onebit train: --precisions chooses the rows of --compare precisions",
              file=sys.stderr)
        return 2
    return run(technique=args.technique, compare=args.compare, steps=args.steps, seed=args.seed,
               precisions=args.precisions,
               out=args.out, json_out=args.json, d_model=args.d_model, heads=args.heads,
               bits=args.bits, weights=args.weights, layer_bits=args.layer_bits,
               layer_weights=args.layer_weights, positions=args.positions,
               d_ff=args.d_ff, n_layers=args.layers, context=args.context, batch=args.batch)


def _quantize(args: argparse.Namespace) -> int:
    from .quantize import main as quantize_main
    return quantize_main(args.input, args.output, method=args.method, seed=args.seed,
                         heads=args.heads, json_out=args.json, bits=args.bits,
                         weights=args.weights)


def _import(args: argparse.Namespace) -> int:
    from .mlp_commands import import_main
    return import_main(args.model, args.output, json_out=args.json)


def _run(args: argparse.Namespace) -> int:
    from .mlp_commands import run_main
    return run_main(args.model, args.input, device=args.device, simulator=args.simulator,
                    json_out=args.json)


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep_command
    return run_sweep_command(args)


def _flash(args: argparse.Namespace) -> int:
    from ..flow.flash import FlashError, flash

    try:
        return flash(args.board, args.bitstream, args.target, dry_run=args.dry_run)
    except (FlashError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) else e
        print(f"onebit flash: {msg}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, KeyError)) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the ``onebit`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_errors = bool(argv) and argv[0] in ("quantize", "import", "run") and \
        "--json" in argv
    parser = _Parser(prog="onebit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"onebit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate tokens with the default 1-bit model")
    demo.add_argument("--seed", type=_non_negative, default=0,
                      help="seed of the random default model")
    demo.add_argument("--tokens", type=_positive, default=16, help="how many tokens to generate")
    demo.add_argument("--random", action="store_true",
                      help="use a seeded random model instead of the shipped trained one")
    demo.add_argument("--simulator", choices=["verilator", "icarus", "amaranth"],
                      help="simulator for the gateware (default: the fastest installed)")
    demo.add_argument("--board",
                      help="run the gateware of this board's bitstream (its device, built for its "
                           "FPGA family; Icarus or Verilator): ulx3s-85f")
    for name, what in (("rows", "rows"), ("cols", "columns"), ("lanes", "lanes an element")):
        demo.add_argument(f"--{name}", type=_positive,
                          help=f"array {what} of the device sized for the model (default 4, 4, "
                               f"32; not with --board)")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="print performance figures")
    bench.add_argument("what", choices=["golden", "core", "link", "scaling", "array", "layer",
                                        "import"],
                       help="golden: NumPy golden model time; core: GEMM cycles on the array; "
                            "link: wire efficiency, host packing speed, fault injection; "
                            "scaling: builds at several array sizes per board; "
                            "array: the array alone placed and routed at several sizes; "
                            "import: Brevitas MLPs on digits, QONNX vs golden vs device")
    bench.add_argument("--json", action="store_true", help="print JSON for machines")
    bench.add_argument("--repeats", type=_positive, default=5,
                       help="timing repeats (best is kept)")
    bench.add_argument("--rows", type=_positive, default=4, help="core: array rows")
    bench.add_argument("--cols", type=_positive, default=8, help="core: array columns")
    bench.add_argument("--lanes", type=_positive, default=32, help="core: lanes per element")
    bench.add_argument("--sim", choices=["verilator", "icarus"], default=None,
                       help="core, layer: simulator (default verilator); import: the device's "
                            "(default icarus)")
    bench.add_argument("--no-synth", action="store_true", help="core: skip the synthesis")
    bench.add_argument("--bits", type=_int_list(1, 4), default=(1,),
                       help="core, layer: activation bits to compare, e.g. 1,2,4 (core: the "
                            "XOR products at each, on a core of the largest; layer: the "
                            "reference layer at each; default 1)")
    bench.add_argument("--weights", choices=["binary", "ternary"], default="binary",
                       help="layer: the weight kind (default binary)")
    bench.add_argument("--frame-bytes", type=_positive, default=4096,
                       help="link: data bytes per LOAD frame (the device's staging buffer)")
    bench.add_argument("--d-model", type=_positive, default=256, help="link: layer width D")
    bench.add_argument("--faults", type=_non_negative, default=0,
                       help="link: also run a fault-injection campaign of this many products")
    bench.add_argument("--mlp", type=_non_negative, default=0,
                       help="link: also run a 1024-1024-1024-1024-10 MLP on this many inputs "
                            "through linear on Verilator, on each board's device")
    bench.add_argument("--boards", nargs="+",
                       help="scaling, array, link: boards (default: all)")
    bench.add_argument("--layer-cols", type=_positive, default=4,
                       help="layer: array columns (must divide the lanes)")
    bench.add_argument("--decode", type=_positive, default=4, help="layer: decode tokens")
    bench.add_argument("--plot", help="layer: also profile each step on Amaranth's simulator and "
                                      "draw where a token's cycles go to this PNG file")
    bench.set_defaults(func=_bench)

    build = sub.add_parser("build", help="build the design into a bitstream for a board")
    build.add_argument("--board",
                       help="a board of constraints/: icebreaker, ulx3s-25f, ulx3s-85f")
    build.add_argument("--rows", type=_positive, help="array rows (default: the board's)")
    build.add_argument("--cols", type=_positive, help="array columns (default: the board's)")
    build.add_argument("--lanes", type=_positive, help="lanes per element (default: the board's)")
    build.add_argument("--clock-mhz", type=_clock,
                       help="clock target in MHz (boards with a PLL; default: the board's)")
    build.add_argument("--json", action="store_true", help="print the report as JSON")
    build.add_argument("--rebuild", action="store_true",
                       help="build again even if this design's build is cached")
    placement = build.add_mutually_exclusive_group()
    placement.add_argument("--seed", type=_non_negative,
                           help="nextpnr's placement seed (a design that routes slowly or not "
                                "at all may route with another)")
    placement.add_argument("--seeds", type=_seed_list, metavar="N,N,...",
                           help="placement seeds tried in turn until one meets timing "
                                "(default: the board's)")
    build.add_argument("--jobs", type=_positive,
                       help="placement seeds built at once (default: one per core)")
    from ..flow.build import ROUTERS

    build.add_argument("--router", choices=ROUTERS,
                       help="nextpnr's router (default: router1)")
    build.add_argument("--asic", action="store_true",
                       help="instead: an ASIC estimate of the core (Yosys synth, stat -tech cmos)")
    build.set_defaults(func=_build)

    tr = sub.add_parser("train", help="train a 1-bit character LM (needs onebit[train])")
    tr.add_argument("--technique", default="combined",
                    help="ste, ste-clip, stochastic, error-feedback, grad-clip, distill, "
                         "combined (default) or float")
    tr.add_argument("--compare", nargs="?", const="both",
                    choices=["techniques", "precisions", "both"],
                    help="train under one budget and print the tables: every technique, and "
                         "A = 1..4 with binary and ternary weights (default both)")
    tr.add_argument("--precisions", type=_precision_list, metavar="A:KIND,...",
                    help="--compare precisions: only these rows (default A = 1..4 with both "
                         "kinds), e.g. 2:binary,3:binary")
    tr.add_argument("--bits", type=_integer(1, 4), default=1,
                    help="activation bits of every layer and the head (1..4)")
    tr.add_argument("--weights", choices=["binary", "ternary"], default="binary",
                    help="weight kind of every layer and the head")
    tr.add_argument("--layer-bits", type=_int_list(1, 4), metavar="A,A,...",
                    help="per-layer activation bits (a hybrid model; default --bits)")
    tr.add_argument("--layer-weights", type=_kind_list, metavar="KIND,KIND,...",
                    help="per-layer weight kinds (binary or ternary; default --weights)")
    tr.add_argument("--positions", action="store_true",
                    help="learn a position table of --context rows (added on the host)")
    tr.add_argument("--steps", type=_positive, default=2000, help="optimiser steps per run")
    tr.add_argument("--seed", type=_non_negative, default=0)
    tr.add_argument("--out", help="model file (.npz) or folder (default build/train)")
    tr.add_argument("--d-model", type=_positive, default=128)
    tr.add_argument("--heads", type=_positive, default=4, help="must divide --d-model")
    tr.add_argument("--d-ff", type=_positive, default=512)
    tr.add_argument("--layers", type=_positive, default=2)
    tr.add_argument("--context", type=_positive, default=64)
    tr.add_argument("--batch", type=_positive, default=32)
    tr.add_argument("--json", action="store_true", help="print JSON for machines")
    tr.set_defaults(func=_train)

    qz = sub.add_parser("quantize", help="float weights (.npz) to a binary model file")
    qz.add_argument("input", help="float .npz (the spec's names; see docs/quantize.md)")
    qz.add_argument("-o", "--output", required=True, help="binary model file to write (.npz)")
    qz.add_argument("--method", default="sign", choices=["sign", "stochastic", "error-feedback"])
    qz.add_argument("--seed", type=_non_negative, default=0,
                    help="seed of stochastic binarisation")
    qz.add_argument("--heads", type=_positive,
                    help="attention heads (else the file's heads entry)")
    qz.add_argument("--bits", type=_integer(1, 4), default=1,
                    help="activation bits A of every quantiser (1..4; multi-thresholds)")
    qz.add_argument("--weights", choices=["binary", "ternary"], default="binary",
                    help="weight kind: binary (--method) or ternary (BitNet b1.58's absmean)")
    qz.add_argument("--json", action="store_true",
                    help="print one JSON object (the summary or the error) on stdout")
    qz.set_defaults(func=_quantize)

    imp = sub.add_parser("import", help="a QONNX graph (Brevitas export) to an MLP model file "
                                        "(needs onebit[import])")
    imp.add_argument("model", help="the .onnx file (export_qonnx's output)")
    imp.add_argument("-o", "--output", required=True, help="MLP model file to write (.npz)")
    imp.add_argument("--json", action="store_true",
                     help="print one JSON object (the summary or the error) on stdout")
    imp.set_defaults(func=_import)

    rn = sub.add_parser("run", help="run an MLP model file on raw float inputs")
    rn.add_argument("model", help="MLP model file (.npz, from onebit import)")
    rn.add_argument("--input", required=True, help="inputs: a .npy of floats, one row each")
    rn.add_argument("--device", default="sim",
                    help="sim (default), serial://PORT?baud=N for a board, or golden (NumPy)")
    rn.add_argument("--simulator", choices=["verilator", "icarus", "amaranth"],
                    help="with --device sim: the simulator (default Amaranth's)")
    rn.add_argument("--json", action="store_true",
                    help="print one JSON object: outputs and classes (or the error)")
    rn.set_defaults(func=_run)

    sw = sub.add_parser("sweep", help="build a grid of boards, array shapes, clocks and seeds "
                                      "as jobs on Dask; a results table and plots")
    sw.add_argument("--boards", type=_name_list, required=True, metavar="B,B,...",
                    help="boards of constraints/ (icebreaker, ulx3s-25f, ulx3s-85f)")
    sw.add_argument("--sizes", type=_name_list, required=True, metavar="RxCxL,...",
                    help="array shapes, such as 2x2x16,4x4x32")
    sw.add_argument("--clocks", type=_clock_list, default=[None], metavar="MHZ,...",
                    help="clock targets in MHz (default: each board's)")
    sw.add_argument("--seeds", type=_seed_list, default=[None], metavar="N,N,...",
                    help="placement seeds, one job each (default: each board's seeds in turn)")
    sw.add_argument("--scheduler", help="a running dask.distributed scheduler, tcp://HOST:PORT "
                                        "(default: a local cluster)")
    sw.add_argument("--workers", type=_positive,
                    help="local cluster: worker processes (default: one per core)")
    sw.add_argument("--out", default=None,
                    help="folder for results.json, results.csv and the bitstreams "
                         "(default build/sweep/latest)")
    sw.add_argument("--plot", help="also draw the results to this PNG file")
    sw.add_argument("--json", action="store_true", help="print the table as JSON")
    sw.set_defaults(func=_sweep)

    fl = sub.add_parser("flash", help="program a board with openFPGALoader")
    fl.add_argument("--board", required=True, help="icebreaker, ulx3s-25f or ulx3s-85f")
    fl.add_argument("--bitstream", help="the bitstream (default: the board's default design, "
                                        "built or taken from the build cache)")
    target = fl.add_mutually_exclusive_group()
    target.add_argument("--sram", dest="target", action="store_const", const="sram",
                        help="load into the FPGA's configuration memory (lost at power-off)")
    target.add_argument("--flash", dest="target", action="store_const", const="flash",
                        help="write the board's SPI flash (kept)")
    fl.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    fl.set_defaults(func=_flash, target=None)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
