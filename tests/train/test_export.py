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
    m = BinaryLM(BinaryConfig(vocab=23, d_model=32, heads=2, d_ff=64, n_layers=2, r=3),
                 seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.3)
        for layer in m.layers:
            layer.ta.copy_(torch.randn(layer.ta.shape, generator=gen) * 0.5)
            layer.so.copy_(torch.randn(layer.so.shape, generator=gen))
        m.train()
        for _ in range(10):                  # running statistics of real activations
            m(torch.randint(0, 23, (4, 24), generator=gen))
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
                 "--heads", "2", "--d-ff", "64", "--layers", "1", "--context", "16",
                 "--batch", "4", "--out", str(out), "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out)
    m = ModelParams.load(out)
    assert summary["model"] == str(out) and summary["valid_loss"] > 0
    assert m.d_model == 32 and len(m.layers) == 1 and m.charset
    assert main(["train", "--technique", "nope"]) == 2


def test_shipped_model_golden_equals_emulation():
    from onebit.cli.demo import default_model
    from onebit.train.corpus import encode

    m = default_model()
    prompt = encode(m.charset, "The return statement")
    assert np.array_equal(golden.generate(prompt, 12, m), emulate.generate(prompt, 12, m))
