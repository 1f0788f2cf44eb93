r"""Show that two checkouts' device gateware answer every byte stream alike, cycle for cycle.

Both checkouts write ``DeviceLink`` (the whole device behind its byte streams: framing, command
processor, stores, GEMM runner, layer engine) as Verilog for the same small configuration;
Icarus Verilog runs the two side by side on one stream of random frames. The frames are every
command with random arguments (in range and out of it, real LAYER runs and heads among them),
unknown opcodes, short and long lengths, damaged CRCs and abandoned frames, with random gaps;
the answer stream sees random backpressure. Every cycle, the two designs' ``i.ready``,
``o.valid`` and (when valid) ``o.payload`` must agree::

    git clone -q . /tmp/old && git -C /tmp/old checkout -q REV
    (cd /tmp/old && bash scripts/setup.sh)
    .venv/bin/python scripts/link_equivalence.py --gold-python /tmp/old/.venv/bin/python

It checks the design as written for no platform, for iCE40 and for ECP5 (their gateware
differs: ``family``); exit status 0 when every run agrees.
"""

import argparse
import random
import subprocess
import sys

from onebit.host.protocol import ARGUMENTS, Opcode, encode_frame
from onebit.paths import BUILD_ROOT
from onebit.sim.cocotb_runner import cell_models

TIMEOUT = 300           # cycles without a byte that abandon a frame

_WRITER = r"""
import shutil, sys
from onebit.flow.boards import boards
from onebit.hdl.link.device import DeviceLink
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.sim.verilog import write_verilog
out, name, board, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dev = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    act_words=256, weight_words=1024, thresh_words=256, result_beats=64, weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))
platform = None if board == "none" else boards()[board].platform()
shutil.copy(write_verilog(DeviceLink(dev, timeout=timeout), name, folder="link-equivalence",
                          platform=platform), out)
"""

#: Each family's gateware (``none``: written for no platform), by the board whose platform
#: elaborates it.
BOARDS = {"none": "none", "ice40": "icebreaker", "ecp5": "ulx3s-85f"}

_TB = r"""
`timescale 1ns/1ps
module tb;
    reg clk = 0, rst = 1;
    always #5 clk = ~clk;
    reg [31:0] stim [0:{n}];            // {{gap[23:8], byte[7:0]}}
    integer at = 0, wait_left = 0, cycle = 0, out_bytes = 0, seed = {seed};
    reg i_valid = 0, o_ready = 0;
    reg [7:0] i_payload = 0;
    wire g_i_ready, t_i_ready, g_o_valid, t_o_valid;
    wire [7:0] g_o_payload, t_o_payload;
    gold g(.clk(clk), .rst(rst), .i__valid(i_valid), .i__payload(i_payload),
           .i__ready(g_i_ready), .o__valid(g_o_valid), .o__payload(g_o_payload),
           .o__ready(o_ready));
    gate t(.clk(clk), .rst(rst), .i__valid(i_valid), .i__payload(i_payload),
           .i__ready(t_i_ready), .o__valid(t_o_valid), .o__payload(t_o_payload),
           .o__ready(o_ready));
    initial begin
        $readmemh("stim.hex", stim);
        repeat (3) @(posedge clk);
        rst = 0;
    end
    always @(posedge clk) if (!rst) begin
        cycle = cycle + 1;
        if (cycle % 50000 == 0) $display("cycle %0d: %0d of {n} bytes in", cycle, at);
        if (g_i_ready !== t_i_ready || g_o_valid !== t_o_valid ||
                (g_o_valid && g_o_payload !== t_o_payload)) begin
            $display("DIFFER at cycle %0d (byte %0d in): i.ready %b/%b o.valid %b/%b %h/%h",
                     cycle, at, g_i_ready, t_i_ready, g_o_valid, t_o_valid, g_o_payload,
                     t_o_payload);
            $finish;
        end
        if (g_o_valid && o_ready) out_bytes = out_bytes + 1;
        if (i_valid && g_i_ready) begin
            i_valid <= 0;
            wait_left = stim[at][23:8];
            at = at + 1;
        end else if (!i_valid) begin
            if (wait_left > 0) wait_left = wait_left - 1;
            else if (at < {n}) begin
                i_valid <= 1;
                i_payload <= stim[at][7:0];
            end else if (!g_o_valid) begin
                $display("AGREE %0d cycles, %0d bytes in, %0d bytes out", cycle, at, out_bytes);
                $finish;
            end
        end
        o_ready <= ($random(seed) & 3) != 0;
    end
endmodule
"""


def _arguments(rng: random.Random, op: Opcode) -> bytes:
    """Random arguments: each field small (in range, mostly) or any value."""
    out = bytearray()
    for name, size in ARGUMENTS[op]:
        if op == Opcode.LAYER:
            value = {"flags": rng.choice([0, 1, 2, 3, 1, 0, 4]), "slot": rng.choice([0, 1, 1, 2]),
                     "shift": rng.randrange(17), "t": rng.choice([1, 1, 2, 3, 9]),
                     "f": rng.choice([16, 32, 32, 33]), "n": rng.choice([1, 2, 5, 64]),
                     "res_base": rng.choice([0, 0, 16, 79]), "w_base": rng.choice([0, 0, 8, 1000]),
                     "th_base": rng.choice([0, 0, 2, 250]), "p_base": rng.choice([0, 0, 120])
                     }.get(name)
        else:
            value = None
        if value is None:
            value = rng.choice([rng.randrange(4), rng.randrange(64), rng.randrange(1 << 8 * size)])
        out += value.to_bytes(size, "little")
    return bytes(out)


def stimulus(rng: random.Random, frames: int, skip: tuple[Opcode, ...] = ()
             ) -> list[tuple[int, int]]:
    """(byte, gap cycles after it) for ``frames`` random frames (none with an opcode of
    ``skip``)."""
    out: list[tuple[int, int]] = []
    for _ in range(frames):
        op = rng.choice([o for o in Opcode if o not in skip] * 4 + [0x00, 0x42, 0x7F])
        payload = _arguments(rng, Opcode(op)) if op in ARGUMENTS else b""
        if op in (Opcode.LOAD_WEIGHTS, Opcode.LOAD_ACTIVATIONS, Opcode.LOAD_THRESHOLDS,
                  Opcode.LOAD_RESIDUAL, Opcode.LOAD_PARAMS):
            payload += bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 2, 4, 8, 16,
                                                                             32, 64, 65])))
        shape = rng.random()
        if shape < 0.05:
            payload = payload[:rng.randrange(len(payload) + 1)]      # short
        elif shape < 0.08:
            payload += bytes(3)                                      # long
        frame = bytearray(encode_frame(op, payload))
        if rng.random() < 0.04:
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)   # damaged
        if rng.random() < 0.03:
            frame = frame[:rng.randrange(1, len(frame))]            # abandoned
            out += [(b, rng.choice([0, 0, 1, 3])) for b in frame[:-1]]
            out.append((frame[-1], TIMEOUT + 50))
            continue
        out += [(b, rng.choice([0, 0, 0, 1, 2, 7])) for b in frame]
        out[-1] = (out[-1][0], rng.choice([0, 5, 40, 400]))
    return out


def run(gold_python: str, family: str, seeds: range, frames: int,
        skip: tuple[Opcode, ...] = ()) -> bool:
    """Write both designs for ``family`` once, then run each seed's stream; True if all agree."""
    folder = BUILD_ROOT / "link-equivalence" / family
    folder.mkdir(parents=True, exist_ok=True)
    for python, name in ((gold_python, "gold"), (sys.executable, "gate")):
        subprocess.run([python, "-c", _WRITER, str(folder / f"{name}.v"), name, BOARDS[family],
                        str(TIMEOUT)], check=True)
    cells = [] if family == "none" else [str(cell_models(family)),
                                         "-DNO_ICE40_DEFAULT_ASSIGNMENTS"]
    ok = True
    for seed in seeds:
        stim = stimulus(random.Random(seed), frames, skip)
        (folder / "stim.hex").write_text("".join(f"{gap:06x}{b:02x}\n" for b, gap in stim))
        (folder / "tb.v").write_text(_TB.format(n=len(stim), seed=seed))
        subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "gold.v", "gate.v",
                        *cells], cwd=folder, check=True)
        proc = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=folder, capture_output=True,
                              text=True)
        line = next((ln for ln in proc.stdout.splitlines()
                     if ln.startswith(("AGREE", "DIFFER"))), proc.stdout + proc.stderr)
        print(f"{family:5} seed {seed}: {line}", flush=True)
        ok &= line.startswith("AGREE")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold-python", required=True,
                        help="the Python of the checkout to compare with (its .venv/bin/python)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--skip", nargs="*", default=[], choices=[o.name for o in Opcode],
                        help="opcodes left out of the stream (e.g. IDENTIFY, whose answer "
                             "changes with the protocol version)")
    a = parser.parse_args()
    skip = tuple(Opcode[name] for name in a.skip)
    ok = True
    for family in BOARDS:
        ok &= run(a.gold_python, family, range(a.seeds), a.frames, skip)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
