"""Export of a trained network: folding is exact, the golden model and the network's own integer
emulation give the same logits and tokens, and a few training steps run."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (PyTorch) is not installed")

from onebit.host import golden, random_model  # noqa: E402
from onebit.host.params import ModelParams  # noqa: E402
from onebit.train import emulate  # noqa: E402
from onebit.train.binary_lm import BinaryConfig, BinaryLM  # noqa: E402
from onebit.train.corpus import load_corpus  # noqa: E402
from onebit.train.export import export_model  # noqa: E402
from onebit.train.loop import TECHNIQUES, RunConfig, train  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _scrambled_model(seed: int) -> BinaryLM:
    """A model whose batch norms have random statistics and gammas of both signs."""
    return _scramble(BinaryLM(BinaryConfig(vocab=23, d_model=32, heads=2, d_ff=64, n_layers=2,
                                           r=3), seed=seed), seed, tokens=24)


def _scramble(m: BinaryLM, seed: int, *, tokens: int) -> BinaryLM:
    """Random batch-norm gammas (both signs) and biases, steps, position table, score
    thresholds and scales; running statistics of real activations; evaluation mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.3)
        for name, par in m.named_parameters():
            if name.endswith("log_step"):
                par.add_(torch.randn((), generator=gen) * 0.3)
            if name == "pos":
                par.copy_(torch.randn(par.shape, generator=gen) * 0.3)
        for layer in m.layers:
            layer.ta.copy_(torch.randn(layer.ta.shape, generator=gen) * 0.5)
            layer.so.copy_(torch.randn(layer.so.shape, generator=gen))
        m.train()
        for _ in range(10):                  # running statistics of real activations
            m(torch.randint(0, m.cfg.vocab, (4, tokens), generator=gen))
    m.eval()
    return m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_export_is_exact(seed, tmp_path):
    m = _scrambled_model(seed)
    exported = export_model(m)
    flips = sum(int((bn.weight < 0).sum()) for bn in
                (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)))
    assert flips > 0                          # negative gammas were folded
    exported.save(tmp_path / "m.npz")
    loaded = ModelParams.load(tmp_path / "m.npz")   # the file round trip loses nothing
    tokens = np.random.default_rng(seed).integers(0, 23, 24)
    with torch.no_grad():
        network = m.integer_logits(torch.from_numpy(tokens)[None])[0].numpy().astype(np.int64)
    assert np.array_equal(golden.model_logits(tokens, loaded), network)
    assert np.array_equal(emulate.model_logits(tokens, loaded).numpy(), network)
    assert loaded.logit_scale == pytest.approx(float(m.logit_scale))


def test_golden_tokens_equal_the_integer_emulation():
    m = export_model(_scrambled_model(5))
    prompt = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    assert np.array_equal(golden.generate(prompt, 12, m), emulate.generate(prompt, 12, m))


def test_emulation_equals_golden_on_random_models():
    rng = np.random.default_rng(7)
    m = random_model(rng, vocab=30, d_model=48, heads=3, d_ff=80, n_layers=2)
    tokens = rng.integers(0, 30, 20)
    assert np.array_equal(emulate.model_logits(tokens, m).numpy(), golden.model_logits(tokens, m))


@pytest.mark.parametrize("technique", [t for t in TECHNIQUES if t not in ("distill", "combined")])
def test_training_smoke(technique):
    corpus = load_corpus()
    cfg = RunConfig(technique=technique, d_model=32, heads=2, d_ff=64, n_layers=1, steps=30,
                    batch=8, context=32, eval_batches=2)
    run = train(cfg, corpus)
    first, last = run.history[0][1], run.history[-1][1]
    assert last < first                        # it learns something in 30 steps
    assert np.isfinite(run.valid_loss)
    if technique != "float":
        m = export_model(run.model, charset=corpus.charset)
        assert m.vocab == corpus.vocab and m.charset == corpus.charset


def test_distillation_smoke():
    corpus = load_corpus()
    base = dict(d_model=32, heads=2, d_ff=64, n_layers=1, steps=20, batch=8, context=32,
                eval_batches=2)
    teacher = train(RunConfig(technique="float", **base), corpus).model
    run = train(RunConfig(technique="distill", **base), corpus, teacher=teacher)
    assert run.history[-1][1] < run.history[0][1]
    with pytest.raises(ValueError, match="distils from the float twin: pass teacher="):
        train(RunConfig(technique="distill", **base), corpus)


def test_run_config_checks():
    with pytest.raises(ValueError, match="technique must be one of .* not 'magic'"):
        RunConfig(technique="magic")
    with pytest.raises(ValueError, match="RunConfig.steps must be a positive integer, not 0"):
        RunConfig(steps=0)
    with pytest.raises(ValueError, match="heads must divide d_model = 30, not 4"):
        BinaryConfig(vocab=5, d_model=30, heads=4)


def test_corpus_split_and_charset():
    c = load_corpus()
    assert 400_000 < len(c.train) + len(c.valid) < 520_000
    assert len(c.valid) / (len(c.train) + len(c.valid)) == pytest.approx(0.1, abs=1e-3)
    text = "def f(x):\n    return x"
    assert c.decode(c.encode(text)) == text
    assert c.decode(c.encode("\u2603")) == "\ufffd"     # unknown characters map to one token


def test_train_command_writes_a_model(tmp_path, capsys):
    from onebit.cli.main import main

    out = tmp_path / "tiny.npz"
    assert main(["train", "--technique", "ste-clip", "--steps", "5", "--d-model", "32",
                 "--heads", "2", "--d-ff", "64", "--layers", "2", "--context", "16",
                 "--batch", "4", "--out", str(out), "--json", "--layer-bits", "3,1",
                 "--layer-weights", "ternary,binary", "--bits", "2", "--positions"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out)
    m = ModelParams.load(out)
    assert summary["model"] == str(out) and summary["valid_loss"] > 0
    assert m.d_model == 32 and len(m.layers) == 2 and m.charset
    assert [(p.bits, p.weights) for p in m.layers] == [(3, "ternary"), (1, "binary")]
    assert (m.head_bits, m.head_weights, m.P.shape) == (2, "binary", (16, 32))
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["layers"] == [{"bits": 3, "weights": "ternary"}, {"bits": 1, "weights": "binary"}]
    assert card["positions"] == 16 and card["valid_loss"] == summary["valid_loss"]
    assert main(["train", "--technique", "nope"]) == 2


def test_shipped_model_golden_equals_emulation():
    from onebit.cli.demo import default_model
    from onebit.train.corpus import encode

    m = default_model()
    prompt = encode(m.charset, "The return statement")
    assert np.array_equal(golden.generate(prompt, 12, m), emulate.generate(prompt, 12, m))


def _scrambled_v2(seed: int, bits, weights, head_bits, head_weights, positions) -> BinaryLM:
    m = BinaryLM(BinaryConfig(vocab=19, d_model=24, heads=2, d_ff=40, n_layers=2, r=3,
                              bits=bits, weights=weights, head_bits=head_bits,
                              head_weights=head_weights, positions=positions), seed=seed)
    return _scramble(m, seed, tokens=20)


@pytest.mark.parametrize("bits, weights, head", [
    ((2, 2), ("binary", "binary"), (2, "binary")),
    ((4, 3), ("ternary", "ternary"), (4, "ternary")),
    ((1, 4), ("ternary", "binary"), (3, "binary")),      # hybrid: layers of their own
])
def test_hybrid_export_is_exact(bits, weights, head, tmp_path):
    """Version 2: A-bit quantisers with learned steps, ternary weights, a position table,
    per-layer precision: the exported file's golden logits and the integer emulation's equal
    the network's own integers, and the file round-trips."""
    m = _scrambled_v2(7, bits, weights, *head, positions=20)
    exported = export_model(m)
    assert [(p.bits, p.weights) for p in exported.layers] == list(zip(bits, weights,
                                                                      strict=True))
    assert (exported.head_bits, exported.head_weights) == head
    assert exported.P is not None and exported.P.any()
    exported.save(tmp_path / "m.npz")
    loaded = ModelParams.load(tmp_path / "m.npz")
    tokens = np.random.default_rng(7).integers(0, 19, 20)
    with torch.no_grad():
        network = m.integer_logits(torch.from_numpy(tokens)[None])[0].numpy().astype(np.int64)
    assert np.array_equal(golden.model_logits(tokens, loaded), network)
    assert np.array_equal(emulate.model_logits(tokens, loaded).numpy(), network)
    assert np.array_equal(golden.generate(tokens[:5], 6, loaded),
                          emulate.generate(tokens[:5], 6, loaded))


@pytest.mark.parametrize("kw", [dict(bits=2, weights="ternary", positions=True),
                                dict(layer_bits=(1, 4), layer_weights=("binary", "ternary"))])
def test_hybrid_training_smoke(kw):
    corpus = load_corpus()
    cfg = RunConfig(technique="grad-clip", steps=3, batch=4, context=16, d_model=32, heads=2,
                    d_ff=32, n_layers=2, eval_batches=2, **kw)
    r = train(cfg, corpus)
    m = export_model(r.model, charset=corpus.charset)
    assert np.isfinite(r.valid_loss)
    golden.generate(np.array([1, 2, 3]), 2, m)


def test_precision_table_smoke():
    """onebit train --compare's precision table: every A and weight kind under one budget,
    each row measured on its exported file by the golden model."""
    from onebit.train.compare import PRECISIONS, compare_precisions, format_precision_table

    corpus = load_corpus()
    cfg = RunConfig(technique="grad-clip", steps=2, batch=2, context=8, d_model=16, heads=2,
                    d_ff=16, n_layers=1, eval_batches=1)
    rows, runs, float_loss = compare_precisions(cfg, corpus)
    assert [(r.bits, r.weights) for r in rows] == list(PRECISIONS) and len(runs) == 9
    assert all(np.isfinite(r.valid_loss) for r in rows)
    by = {(r.bits, r.weights): r for r in rows}
    assert by[(1, "ternary")].weight_bytes == 2 * by[(1, "binary")].weight_bytes
    assert by[(4, "binary")].ops_per_token > 4 * by[(1, "binary")].ops_per_token
    assert "A1-binary" in runs and "4 ternary" in format_precision_table(rows, cfg, float_loss)


def test_compare_precisions_command_takes_chosen_rows(tmp_path, capsys):
    """``onebit train --compare precisions --precisions ...`` trains only those rows (and the
    float twin) and writes their table and files."""
    from onebit.cli.main import main

    assert main(["train", "--compare", "precisions", "--precisions", "2:binary,1:ternary",
                 "--technique", "grad-clip", "--steps", "2", "--d-model", "16", "--heads", "2",
                 "--d-ff", "16", "--layers", "1", "--context", "8", "--batch", "2",
                 "--out", str(tmp_path), "--json"]) == 0
    import json
    captured = capsys.readouterr()
    table = json.loads(captured.out)["precisions"]
    assert [(r["bits"], r["weights"]) for r in table["rows"]] == [(2, "binary"), (1, "ternary")]
    # each row is reported and kept as it finishes, and the saved table is the whole one
    assert "precisions: A = 2 binary" in captured.err
    assert "precisions: A = 1 ternary" in captured.err
    assert json.loads((tmp_path / "precisions.json").read_text())["rows"] == table["rows"]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["A1-ternary.npz", "A2-binary.npz"]
