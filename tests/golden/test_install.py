"""The host package imports with NumPy alone, and the command line runs."""

import json
import subprocess
import sys

import pytest

from onebit.cli.main import main


def test_host_imports_without_amaranth_or_cocotb():
    code = ("import sys, onebit.host; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('amaranth', 'cocotb', 'cocotb_tools')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_demo_runs_a_random_model_on_icarus_and_agrees(capsys):
    assert main(["demo", "--tokens", "3", "--random", "--simulator", "icarus"]) == 0
    out = capsys.readouterr().out
    assert "seeded random 1-bit LM" in out and "on icarus" in out
    assert "bit-exact with the golden model: yes" in out
    assert "cycles per token" in out and "utilization" in out and "tokens/s decode" in out


@pytest.mark.slow
def test_demo_runs_the_shipped_model_on_verilator_and_agrees(capsys):
    """The README's first command (a Verilator build of the demo's device, then its run)."""
    assert main(["demo", "--tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "trained character LM" in out and "on verilator" in out
    assert "precision: layer 0 A=3 binary, layer 1 A=3 binary, head A=3 binary" in out
    assert "bit-exact with the golden model: yes" in out
    assert "cycles per token" in out and "utilization" in out and "tokens/s decode" in out


def test_shipped_model_is_small_and_described():
    from importlib import resources

    from onebit.cli.demo import default_model, default_model_card

    m, card = default_model(), default_model_card()
    assert m is not None and card is not None
    size = (resources.files("onebit.host") / "default_model.npz").stat().st_size
    assert size < 1_000_000 // 4
    assert len(m.charset) == m.vocab and m.logit_scale > 0
    assert card["bits_per_char"] == pytest.approx(card["valid_loss"] / 0.693147, rel=1e-3)
    assert card["config"]["d_model"] == m.d_model and card["config"]["n_layers"] == len(m.layers)
    assert card["layers"] == [{"bits": p.bits, "weights": p.weights} for p in m.layers]
    assert card["head"] == {"bits": m.head_bits, "weights": m.head_weights}
    assert card["positions"] == (0 if m.P is None else m.P.shape[0])


def test_bench_golden_json(capsys):
    assert main(["bench", "golden", "--json", "--repeats", "1"]) == 0
    assert '"prefill_s"' in capsys.readouterr().out


@pytest.mark.slow
def test_bench_link_json(capsys):
    assert main(["bench", "link", "--json", "--frame-bytes", "1000", "--d-model", "64"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["layer_weights"]["payload_bytes"] == 12 * 64 * 64 // 8
    # Each 1000-byte frame costs 14 bytes more (framing 9, tag and offset 5).
    assert r["layer_weights"]["sent_bytes"] == 6144 + 7 * 14
    assert r["token"]["payload_bytes"] == 8 and r["token"]["sent_bytes"] == 8 + 14


def test_bench_layer_measures_a_small_layer():
    from onebit.bench.layer import measure, reference_device

    dev = reference_device(2, 2, 16, decode=2, t=6, d=32, heads=2, f=64)
    r = measure(dev, sim="icarus", decode=2, t=6, repeats=1)
    assert r["bit_exact"] and r["layer"] == {"tokens": 6, "d_model": 32, "heads": 2, "d_ff": 64}
    assert 0 < r["prefill"]["utilization"] <= 1 and 0 < r["decode"]["utilization"] <= 1
    assert r["prefill"]["cycles"] > r["prefill"]["ideal"] > 0
    assert {b["board"] for b in r["boards"]} == {"icebreaker", "ulx3s-25f", "ulx3s-85f"}


@pytest.mark.slow
def test_bench_layer_measures_a_two_bit_layer():
    from onebit.bench.layer import measure, reference_device

    dev = reference_device(2, 2, 16, decode=2, t=6, d=32, heads=2, f=64, bits=2)
    r = measure(dev, sim="icarus", decode=2, t=6, repeats=1, bits=2)
    assert r["bit_exact"] and (r["bits"], r["engine_bits"]) == (2, 2)
    # Decode runs on the GEMV unit, a line of rows x cols words a cycle with both planes'
    # popcounts at once: up to twice the array's peak rate.
    assert dev.weight_banks == 4
    assert 0 < r["prefill"]["utilization"] <= 1 and 0 < r["decode"]["utilization"] <= 2


@pytest.mark.parametrize("name", ["hybrid_a4_model", "default_model"])
def test_hybrid_model_is_described(name):
    """The version-2 models (A = 4, and A = 3: the shipped default; binary weights, positions):
    small, each card matching its file, within 10% of the float twin's validation loss, the
    card's sample what the golden model writes."""
    from importlib import resources

    import numpy as np

    from onebit.host import ModelParams, golden

    path = resources.files("onebit.host") / f"{name}.npz"
    m = ModelParams.load(path)
    card = json.loads((resources.files("onebit.host") / f"{name}.json").read_text())
    assert path.stat().st_size < 1_000_000
    assert card["layers"] == [{"bits": p.bits, "weights": p.weights} for p in m.layers]
    assert card["head"] == {"bits": m.head_bits, "weights": m.head_weights}
    assert card["positions"] == m.P.shape[0]
    assert card["ratio_to_float"] == pytest.approx(card["valid_loss"] / card["float_valid_loss"],
                                                   abs=1e-3)
    assert card["ratio_to_float"] <= 1.10
    from onebit.train.corpus import decode, encode
    prompt = "The return statement"
    out = golden.generate(np.array(encode(m.charset, prompt)), 44, m)
    assert prompt + decode(m.charset, out) == card["sample"]
