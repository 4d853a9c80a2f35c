"""Pixel losses and their mix: known values, gradients, registry and spec validation."""

from __future__ import annotations

import math

import pytest
import torch

from sisr.errors import ConfigError
from sisr.losses import (
    LOSSES,
    CharbonnierLoss,
    build_loss,
    charbonnier_loss,
    l1_loss,
    l2_loss,
    residual_l2_loss,
)


def _pair(
    seed: int = 0, shape: tuple[int, ...] = (2, 3, 4, 4)
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64), torch.rand(
        shape, generator=g, dtype=torch.float64
    )


def test_known_values_on_constructed_inputs() -> None:
    hr = torch.zeros(1, 1, 2, 2)
    sr = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    assert l1_loss(sr, hr).item() == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert l2_loss(sr, hr).item() == pytest.approx((1 + 1 + 0.25 + 0) / 4)
    expected = (2 * math.sqrt(1 + 1e-6) + math.sqrt(0.25 + 1e-6) + 1e-3) / 4
    assert charbonnier_loss(sr, hr).item() == pytest.approx(expected, rel=1e-6)
    # A perfect prediction scores eps, not zero.
    assert charbonnier_loss(hr, hr, eps=0.01).item() == pytest.approx(0.01)


def test_charbonnier_tends_to_l1_for_large_errors() -> None:
    sr, hr = _pair(1)
    assert charbonnier_loss(sr, hr, eps=1e-9).item() == pytest.approx(l1_loss(sr, hr).item())


@pytest.mark.parametrize(
    "fn", [l1_loss, l2_loss, charbonnier_loss], ids=["l1", "l2", "charbonnier"]
)
def test_gradcheck(fn) -> None:
    sr, hr = _pair(2)
    # Keep |sr - hr| away from 0 where L1 has a kink.
    sr = (hr + torch.where(sr > hr, 0.1, -0.1) + (sr - hr) * 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: fn(s, hr), (sr,))


def test_analytic_gradients() -> None:
    sr, hr = _pair(3)
    sr.requires_grad_(True)
    l2_loss(sr, hr).backward()
    torch.testing.assert_close(sr.grad, 2 * (sr.detach() - hr) / sr.numel())


def test_residual_loss_equals_l2_on_sr_and_uses_model_residual() -> None:
    from sisr.degrade import imresize

    sr, hr = _pair(4, (2, 3, 8, 8))
    lr = imresize(hr, scale=0.5)
    val = residual_l2_loss(sr, hr, lr)
    torch.testing.assert_close(val, l2_loss(sr, hr))
    # With the model's own residual the target is hr - bicubic_up(lr).
    up = imresize(lr, size=(8, 8))
    res = torch.rand_like(hr)
    torch.testing.assert_close(
        residual_l2_loss(sr, hr, lr, residual=res), (res - (hr - up)).square().mean()
    )
    assert residual_l2_loss(sr, hr, lr, residual=hr - up).item() == pytest.approx(0.0, abs=1e-20)
    res.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r: residual_l2_loss(sr, hr, lr, residual=r), (res,))


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        l1_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_build_loss_weighted_sum_and_parts() -> None:
    sr, hr = _pair(5, (2, 3, 8, 8))
    lr = hr[..., ::2, ::2]
    mix = build_loss(
        [
            {"name": "l1", "weight": 1.0},
            {"name": "charbonnier", "weight": 0.5, "eps": 1e-2},
            {"name": "mse", "weight": 2},
            {"name": "l1", "weight": 0.25},
        ]
    )
    total, parts = mix(sr, hr, lr)
    l1, ch, l2 = l1_loss(sr, hr), charbonnier_loss(sr, hr, 1e-2), l2_loss(sr, hr)
    torch.testing.assert_close(total, l1 + 0.5 * ch + 2 * l2 + 0.25 * l1)
    assert list(parts) == ["l1", "charbonnier", "mse", "l1#2"]
    assert all(isinstance(v, float) for v in parts.values())
    assert parts["charbonnier"] == pytest.approx(ch.item())
    # sync=False keeps detached tensors (no device sync), same values.
    _, lazy = mix(sr, hr, lr, sync=False)
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in lazy.values())
    assert lazy["mse"].item() == pytest.approx(parts["mse"])


def test_mix_backprop_and_extra_keywords_reach_only_takers() -> None:
    from sisr.degrade import imresize

    sr, hr = _pair(6, (1, 3, 8, 8))
    lr = imresize(hr, scale=0.5)
    sr.requires_grad_(True)
    mix = build_loss([{"name": "residual_l2", "weight": 1.0}, {"name": "l1", "weight": 1.0}])
    assert mix.needs_lr
    up = imresize(lr, size=(8, 8))
    total, parts = mix(sr, hr, lr, residual=sr - up)
    total.backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all()
    assert parts["residual_l2"] == pytest.approx(l2_loss(sr, hr).item(), rel=1e-9)


def test_context_is_passed_to_losses_that_declare_it(monkeypatch) -> None:
    seen = {}

    class NeedsD(torch.nn.Module):
        def __init__(self, discriminator: object) -> None:
            super().__init__()
            seen["d"] = discriminator

        def forward(self, sr, hr, lr=None):
            return (sr - hr).abs().mean() * 0

    monkeypatch.setitem(LOSSES, "fake_adv", NeedsD)
    mix = build_loss([{"name": "fake_adv", "weight": 0.1}, {"name": "l1"}], discriminator="D")
    assert seen["d"] == "D"
    assert isinstance(mix.losses[1], torch.nn.Module)


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        ([], "non-empty"),
        ({"name": "l1"}, "non-empty"),
        ([{"weight": 1}], "name"),
        ([{"name": "vgg"}], "unknown loss 'vgg'"),
        ([{"name": "l1", "weight": "big"}], "weight"),
        ([{"name": "l1", "eps": 1e-3}], "unknown option"),
        ([{"name": "charbonnier", "eps": 0}], "eps"),
    ],
)
def test_bad_specs_raise_config_error(specs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        build_loss(specs)


def test_registry_modules() -> None:
    assert {"l1", "l2", "charbonnier", "residual_l2"} <= set(LOSSES)
    assert CharbonnierLoss().eps == 1e-3


def test_highpass_is_the_residual_l2_loss() -> None:
    from sisr.losses import build_loss

    g = torch.Generator().manual_seed(3)
    lr = torch.rand(2, 3, 6, 6, generator=g)
    hr = torch.rand(2, 3, 12, 12, generator=g)
    sr = torch.rand(2, 3, 12, 12, generator=g)
    a, _ = build_loss([{"name": "highpass"}])(sr, hr, lr)
    b, _ = build_loss([{"name": "residual_l2"}])(sr, hr, lr)
    assert torch.equal(a, b)
    assert a.item() == pytest.approx(residual_l2_loss(sr, hr, lr).item())
