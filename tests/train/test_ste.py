"""Straight-through estimators, stochastic binarisation and error feedback (training side)."""

import pytest

torch = pytest.importorskip("torch", reason="the train extra (PyTorch) is not installed")

from onebit.train.ste import (  # noqa: E402
    WeightBinarizer,
    floor_ste,
    round_ste,
    sign_ste,
    step_ste,
    stochastic_sign,
)


def test_sign_ste_forward_and_clipped_gradient():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    y = sign_ste(x, clip=True)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]          # zero goes to +1, as the spec's >=
    y.backward(torch.arange(1.0, 8.0))
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]          # zero outside |x| <= 1


def test_sign_ste_plain_gradient_is_identity():
    x = torch.tensor([-3.0, 0.2, 5.0], requires_grad=True)
    sign_ste(x, clip=False).backward(torch.tensor([1.0, 2.0, 3.0]))
    assert x.grad.tolist() == [1, 2, 3]


def test_step_ste_is_hard_sigmoid_gradient():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.9, 1.1], requires_grad=True)
    y = step_ste(x)
    assert y.tolist() == [0, 0, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 0.5, 0.5, 0.5, 0]


def test_round_and_floor_pass_gradients_straight_through():
    x = torch.tensor([-1.5, -0.4, 2.5, 3.7], requires_grad=True)
    assert floor_ste(x).tolist() == [-2, -1, 2, 3]
    assert round_ste(x).tolist() == [-2, -0, 2, 4]
    (floor_ste(x) + round_ste(x)).sum().backward()
    assert x.grad.tolist() == [2, 2, 2, 2]


def test_stochastic_binarization_is_unbiased():
    w = torch.tensor([-1.7, -0.6, -0.1, 0.0, 0.3, 0.8, 2.0])
    gen = torch.Generator().manual_seed(3)
    draws = torch.stack([stochastic_sign(w, gen) for _ in range(40000)])
    assert set(draws.unique().tolist()) == {-1.0, 1.0}
    mean = draws.mean(dim=0)
    # the standard error is at most 1/sqrt(40000) = 0.005; allow 5 of them
    assert torch.allclose(mean, w.clamp(-1, 1), atol=0.025), mean


def test_stochastic_binarization_gradient_is_clipped_ste():
    w = torch.tensor([-2.0, 0.3, 1.5], requires_grad=True)
    stochastic_sign(w, torch.Generator().manual_seed(0)).sum().backward()
    assert w.grad.tolist() == [0, 1, 0]


def test_error_feedback_carries_the_residual():
    b = WeightBinarizer(1, 4, error_feedback=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        b.weight.copy_(torch.tensor([[0.2, -0.1, 0.6, -0.5]]))
    b.train()
    assert b().tolist() == [[1, -1, 1, -1]]
    b.after_step()
    v = torch.tensor([[0.2, -0.1, 0.6, -0.5]])
    s = v.abs().mean()
    assert torch.allclose(b.error, v - s * torch.sign(v))
    # the next forward binarises weight + carried error: 0.2 + (0.2 - 0.35) = 0.05 stays +1 and
    # -0.1 + (-0.1 + 0.35) = 0.15 flips to +1: the error of one step moved the next step's bits
    assert b().tolist() == [[1, 1, 1, -1]]
    # nothing is lost: over n steps of a constant weight, the scaled signs plus the error carried
    # out of the last step add up to n * weight (e_n = n w - sum s_k b_k telescopes)
    total = s * torch.tensor([[1.0, -1, 1, -1]])
    for _ in range(99):
        v = b.weight + b.error
        total += v.abs().mean() * b()
        b.after_step()
    assert torch.allclose(total + b.error, 100 * b.weight, atol=1e-4)


def test_weight_binarizer_clips_latent_weights_and_evaluates_by_sign():
    b = WeightBinarizer(2, 3, mode="stochastic", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        b.weight.copy_(torch.tensor([[3.0, -0.2, 0.0], [-4.0, 0.5, 0.1]]))
    b.after_step()
    assert b.weight.abs().max() == 1
    b.eval()
    assert b().tolist() == [[1, -1, 1], [-1, 1, 1]]
    assert b.bits().tolist() == [[1, 0, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="mode must be one of sign, stochastic, not 'dither'"):
        WeightBinarizer(2, 2, mode="dither")
