"""Bad inputs, as a table: every row is a misuse of the command line or the API that must end in
a clear error (an exception of the named type, or exit status 2 with one line) whose message
holds the named phrase; never a traceback, a hang or a wrong answer. ``quantize --json`` keeps
its contract on every failure: one JSON object ``{"error": ...}`` on stdout and status 2."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from onebit.cli.main import main
from onebit.host import Accelerator, LayerParams, ModelFileError, ModelParams
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig
from onebit.host.layer_layout import check_layer
from onebit.host.link import LinkTimeout
from onebit.host.random_model import random_layer

# (argv, phrase): each exits with status 2 and prints exactly one line naming the problem.
CLI = [
    (["demo", "--tokens", "100000"], "exceed the largest KV cache (32766 tokens)"),
    (["demo", "--tokens", "0"], "argument --tokens: must be an integer at least 1, not 0"),
    (["demo", "--seed", "-1"], "argument --seed: must be an integer at least 0, not -1"),
    (["demo", "--tokens", "many"], "argument --tokens: must be an integer, not 'many'"),
    (["demo", "--cols", "0"], "argument --cols: must be an integer at least 1, not 0"),
    (["demo", "--rows", "8", "--board", "ulx3s-85f"], "a board's device has its own array"),
    (["demo", "--lanes", "24"], "the model does not fit that array: "),
    (["train", "--heads", "3"], "heads must divide d_model = 128, not 3"),
    (["train", "--heads", "0"], "argument --heads: must be an integer at least 1, not 0"),
    (["train", "--d-model", "0"], "argument --d-model: must be an integer at least 1, not 0"),
    (["train", "--layers", "0"], "argument --layers: must be an integer at least 1, not 0"),
    (["train", "--d-ff", "0"], "argument --d-ff: must be an integer at least 1, not 0"),
    (["train", "--steps", "-5"], "argument --steps: must be an integer at least 1, not -5"),
    (["train", "--technique", "magic"], "technique must be one of"),
    (["train", "--bits", "5"], "argument --bits: must be an integer in 1..4, not 5"),
    (["train", "--layer-bits", "1,5"], "argument --layer-bits: must be an integer in 1..4"),
    (["train", "--layer-bits", "1,2,3"], "RunConfig.layer_bits must give one value per layer "
                                         "(2)"),
    (["train", "--layer-weights", "binary,quaternary"], "weight kinds are binary or ternary, "
                                                        "not 'quaternary'"),
    (["train", "--weights", "quaternary"], "argument --weights: invalid choice"),
    (["train", "--compare", "everything"], "argument --compare: invalid choice"),
    (["train", "--compare", "precisions", "--precisions", "5:binary"],
     "precisions are A:KIND with A in 1..4 and KIND binary or ternary, not '5:binary'"),
    (["train", "--compare", "precisions", "--precisions", "2-ternary"],
     "not '2-ternary'"),
    (["train", "--precisions", "2:binary"], "--precisions chooses the rows of --compare"),
    (["bench", "link", "--frame-bytes", "7"], "--frame-bytes/--d-model: Frame data size"),
    (["bench", "link", "--frame-bytes", "0"], "argument --frame-bytes: must be an integer at "
                                              "least 1, not 0"),
    (["bench", "link", "--faults", "-1"], "argument --faults: must be an integer at least 0"),
    (["bench", "core", "--rows", "0"], "argument --rows: must be an integer at least 1, not 0"),
    (["bench", "core", "--lanes", "3"], "Lane count must be a power of two, not 3"),
    (["bench", "core", "--bits", "1,5"], "argument --bits: must be an integer in 1..4, not 5"),
    (["bench", "array", "--boards", "nope"], "--boards: unknown board 'nope'; boards: "),
    (["bench", "scaling", "--boards", "icebreaker", "nope"], "--boards: unknown board 'nope'"),
    (["bench", "layer", "--layer-cols", "3"], "--layer-cols must divide --lanes (32), not 3"),
    (["bench", "layer", "--lanes", "12", "--layer-cols", "4"], "Lane count must be a power of "
                                                               "two, not 12"),
    (["bench", "golden", "--repeats", "0"], "argument --repeats: must be an integer at least 1"),
    (["bench", "golden", "--repeats", "-1"], "argument --repeats: must be an integer at least 1"),
    (["bench", "nothing"], "argument what: invalid choice: 'nothing'"),
    (["build", "--board", "nope"], "unknown board 'nope'"),
    (["build", "--board", "icebreaker", "--rows", "0"], "argument --rows: must be an integer"),
    (["build", "--board", "icebreaker", "--clock-mhz", "0"], "argument --clock-mhz: must be in "
                                                            "1..1000 MHz, not 0"),
    (["build", "--board", "icebreaker", "--seeds", "1,x"], "seeds must be integers separated"),
    (["build", "--board", "icebreaker", "--jobs", "0"], "argument --jobs: must be an integer"),
    (["build"], "--board is required"),
    (["quantize", "in.npz"], "the following arguments are required: -o/--output"),
    (["quantize", "in.npz", "-o", "o.npz", "--seed", "-1"], "argument --seed: must be an "
                                                            "integer at least 0"),
    (["quantize", "in.npz", "-o", "o.npz", "--heads", "0"], "argument --heads: must be an "
                                                            "integer at least 1"),
    (["quantize", "in.npz", "-o", "o.npz", "--bits", "5"], "argument --bits: must be an "
                                                           "integer in 1..4, not 5"),
]


@pytest.mark.parametrize("argv, phrase", CLI, ids=[" ".join(a) for a, _ in CLI])
def test_cli_refuses_with_one_line(argv, phrase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert phrase in lines[-1], err
    assert "Traceback" not in err and len(lines) <= 4


def _float_layer(path: Path) -> None:
    rng = np.random.default_rng(0)
    d, f = 16, 32
    np.savez(path, heads=np.int64(2), **{n: rng.normal(size=s) for n, s in (
        ("Wq", (d, d)), ("Wk", (d, d)), ("Wv", (d, d)), ("Wo", (d, d)), ("W1", (f, d)),
        ("W2", (d, f)))})


# (arguments after "quantize IN", how the input is made, phrase of the JSON error).
QUANTIZE_JSON = [
    (["-o", "o.npz", "--method", "round"], "layer", "invalid choice: 'round'"),
    ([], "layer", "the following arguments are required: -o/--output"),
    (["-o", "o.npz", "--seed", "-3"], "layer", "argument --seed: must be an integer at least 0"),
    (["-o", "nowhere/o.npz"], "layer", "its folder nowhere does not exist"),
    (["-o", "in.npz"], "layer", "the output would overwrite the input"),
    (["-o", "o.npz"], "missing", "in.npz: no such file"),
    (["-o", "o.npz"], "npy", "not a .npz archive (a .npy file"),
    (["-o", "o.npz"], "folder", "is a folder, not a .npz file"),
    (["-o", "o.npz"], "empty", "W1 is empty (shape (0, 16))"),
    (["-o", "o.npz"], "zlib", "is damaged"),
    (["-o", "o.npz"], "huge", "claims a (1099511627776,) float64 array"),
    (["-o", "o.npz"], "vocab0", "E is empty (shape (0, 16))"),
    (["-o", "o.npz"], "widths", "d_model must equal the embedding width 16, not 8"),
    (["-o", "o.npz"], "eps", "eps must be one finite positive number, not nan"),
    (["-o", "o.npz", "--weights", "ternary", "--method", "stochastic"], "layer",
     "method 'stochastic' binarises weights; ternary weights use the absmean rule"),
    (["-o", "o.npz", "--bits", "0"], "layer", "argument --bits: must be an integer in 1..4"),
]


def _make_input(kind: str, path: Path) -> None:
    import zipfile
    if kind == "missing":
        return
    if kind == "folder":
        path.mkdir()
        return
    if kind == "npy":
        with open(path, "wb") as fh:
            np.save(fh, np.zeros((3, 3)))
        return
    _float_layer(path)
    data = dict(np.load(path))
    if kind == "empty":
        data["W1"] = np.zeros((0, 16))
    elif kind == "eps":
        data["eps"] = np.float64("nan")
    elif kind in ("vocab0", "widths"):
        layer = {f"layer0.{k}": v for k, v in data.items()}
        data = {**layer, "E": np.zeros((0 if kind == "vocab0" else 3, 16)),
                "Wout": np.zeros((0 if kind == "vocab0" else 3, 16))}
        if kind == "widths":
            rng = np.random.default_rng(1)
            data.update({f"layer1.{n}": rng.normal(size=s) for n, s in (
                ("Wq", (8, 8)), ("Wk", (8, 8)), ("Wv", (8, 8)), ("Wo", (8, 8)), ("W1", (8, 8)),
                ("W2", (8, 8)))}, **{"layer1.heads": np.int64(2)})
    np.savez_compressed(path, **data)
    if kind == "zlib":
        raw = bytearray(path.read_bytes())
        for i in range(60, 90):
            raw[i] ^= 0x5A
        path.write_bytes(bytes(raw))
    elif kind == "huge":
        import io
        fh = io.BytesIO()
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (1 << 40,)})
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("Wz.npy", fh.getvalue() + bytes(64))


@pytest.mark.parametrize("args, kind, phrase", QUANTIZE_JSON,
                         ids=[f"{k}:{' '.join(a)}" for a, k, _ in QUANTIZE_JSON])
def test_quantize_json_contract_on_every_failure(args, kind, phrase, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make_input(kind, tmp_path / "in.npz")
    try:
        status = main(["quantize", "in.npz", *args, "--json"])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    assert status == 2
    lines = out.splitlines()
    assert len(lines) == 1, out
    answer = json.loads(lines[0])
    assert list(answer) == ["error"] and phrase in answer["error"], answer
    assert not (tmp_path / "o.npz").exists()


# (call, exception type, phrase): the API's misuses.
def _layer_dev():
    return DeviceConfig(layer=LayerConfig())


API = [
    (lambda: Accelerator.open("sim://verilator2"), ValueError, "unknown simulator URL"),
    (lambda: Accelerator.open("sim://icarus", simulator="verilator"), ValueError,
     "names simulator 'icarus' but simulator='verilator' was given"),
    (lambda: Accelerator.open("sim", timeout=0), ValueError,
     "timeout must be a positive number of seconds, not 0"),
    (lambda: Accelerator.open("sim", timeout=float("nan")), ValueError,
     "timeout must be a positive number of seconds"),
    (lambda: Accelerator.open("sim", timeout="1"), ValueError,
     "timeout must be a positive number of seconds, not '1'"),
    (lambda: Accelerator.open("sim", retries=-1), ValueError,
     "retries must be a non-negative integer, not -1"),
    (lambda: Accelerator.open("sim", retries=1.5), ValueError,
     "retries must be a non-negative integer, not 1.5"),
    (lambda: Accelerator.open("tcp://x"), ValueError, "unknown device URL"),
    (lambda: Accelerator.open(3), TypeError, "url must be a string"),
    (lambda: LayerConfig(kv_capacity=40000), ValueError, "KV cache capacity must be at most"),
    (lambda: DeviceConfig(core=CoreConfig(lanes=8), frame_bytes=1), ValueError,
     "Frame data size must be an integer of at least 2, not 1"),
    (lambda: DeviceConfig(core=CoreConfig(lanes=8), frame_bytes=7), ValueError,
     "Frame data size must be a multiple of 2 bytes"),
    (lambda: ModelParams.load("missing.npz"), FileNotFoundError, "no such file"),
    (lambda: check_layer(_layer_dev(), random_layer(np.random.default_rng(0), d_model=64,
                                                    heads=2, d_ff=32, bits=2)), ValueError,
     "the device's layer engine computes activations of up to 1 bit with binary weights "
     "(IDENTIFY); this layer has 2-bit"),
    (lambda: check_layer(_layer_dev(), random_layer(np.random.default_rng(0), d_model=64,
                                                    heads=2, d_ff=32, weights="ternary")),
     ValueError, "this layer has 1-bit activations and ternary weights"),
    (lambda: LayerParams.load("."), ModelFileError, "is a folder"),
    (lambda: LayerConfig(max_bits=5), ValueError, "max_bits must be an integer from 1 to 4"),
    (lambda: LayerConfig(max_bits=4, kv_capacity=3000), ValueError,
     "KV cache capacity must be at most 2184 at max_bits = 4"),
    (lambda: DeviceConfig(layer=LayerConfig(max_bits=2)), ValueError,
     "The layer engine's max_bits (2) exceeds the core's (1)"),
    (lambda: LayerConfig(weight_kinds=("binary", "ternary")), ValueError,
     "max_bits must be at least 2 with weight_kinds ('binary', 'ternary')"),
    (lambda: LayerConfig(weight_kinds=("ternary",)), ValueError,
     "weight_kinds must be ('binary',) or ('binary', 'ternary')"),
]


@pytest.mark.parametrize("call, error, phrase", API, ids=[p for _, _, p in API])
def test_api_refuses_with_a_named_error(call, error, phrase):
    with pytest.raises(error) as info:
        call()
    assert phrase in str(info.value)


def _children() -> set[int]:
    kids = set()
    for task in Path("/proc/self/task").iterdir():
        text = (task / "children").read_text().split()
        kids.update(int(k) for k in text)
    return kids


def test_a_failed_open_leaves_nothing_running():
    """Icarus starts, IDENTIFY cannot answer within a microsecond and no retry is allowed: the
    open fails with LinkTimeout and stops the simulator (no child process, no thread)."""
    dev = DeviceConfig(core=CoreConfig(rows=1, cols=1, lanes=8, max_k=16, max_t=2, max_n=4),
                       frame_bytes=8, act_words=4, weight_words=8, thresh_words=4,
                       result_beats=4)
    threads, kids = threading.active_count(), _children()
    with pytest.raises(LinkTimeout):
        Accelerator.open("sim", simulator="icarus", config=dev, timeout=1e-6, retries=0)
    assert _children() <= kids
    assert threading.active_count() == threads
    assert os.getpid() > 0
