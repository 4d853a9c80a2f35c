"""Adversarial losses: known values per kind and side, label noise, and the G/D step contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sisr.archs import DISCRIMINATORS
from sisr.errors import ConfigError
from sisr.losses import (
    LOSSES,
    AdversarialLoss,
    adversarial_d_loss,
    adversarial_g_loss,
    adversarial_term,
    build_loss,
    frozen,
)
from sisr.losses.adversarial import discriminator_targets


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1)


def _bce(z: float, t: float) -> float:
    """-(t log sigma(z) + (1 - t) log(1 - sigma(z))), from the definition."""
    s = 1.0 / (1.0 + math.exp(-z))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_vanilla_known_values() -> None:
    real, fake = [0.0, 2.0], [0.0, -1.0, math.log(3.0)]
    # G: -log D(G(z)) with D = sigma: -log(1/2) and -log(3/4) and -log(1/(1+e)).
    expected_g = _mean([math.log(2), math.log(1 + math.e), math.log(4 / 3)])
    assert adversarial_g_loss("vanilla", _t(*fake)).item() == pytest.approx(expected_g, rel=1e-6)
    expected_d = _mean([_bce(z, 1) for z in real]) + _mean([_bce(z, 0) for z in fake])
    got = adversarial_d_loss("vanilla", _t(*real), _t(*fake)).item()
    assert got == pytest.approx(expected_d, rel=1e-6)
    # One-sided label smoothing: real target 0.9.
    smooth = _mean([_bce(z, 0.9) for z in real]) + _mean([_bce(z, 0) for z in fake])
    got = adversarial_d_loss("gan", _t(*real), _t(*fake), real_label=0.9).item()
    assert got == pytest.approx(smooth, rel=1e-6)


def test_relativistic_average_known_values() -> None:
    real, fake = [1.0, 3.0], [0.0, 2.0]  # E[C(x_r)] = 2, E[C(x_f)] = 1

    def d_ra(a: float, mean_b: float) -> float:
        return 1.0 / (1.0 + math.exp(-(a - mean_b)))

    # L_D = -(E log D_Ra(x_r, x_f) + E log(1 - D_Ra(x_f, x_r))) / 2 (ESRGAN's code).
    l_d = -0.5 * (
        _mean([math.log(d_ra(r, 1.0)) for r in real])
        + _mean([math.log(1 - d_ra(f, 2.0)) for f in fake])
    )
    # Closed form for these numbers: (log 2 + log(1 + e^-2)) / 2.
    assert l_d == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)
    got = adversarial_d_loss("relativistic", _t(*real), _t(*fake)).item()
    assert got == pytest.approx(l_d, rel=1e-6)
    l_g = -0.5 * (
        _mean([math.log(1 - d_ra(r, 1.0)) for r in real])
        + _mean([math.log(d_ra(f, 2.0)) for f in fake])
    )
    got = adversarial_g_loss("ragan", _t(*fake), _t(*real)).item()
    assert got == pytest.approx(l_g, rel=1e-6)
    with pytest.raises(ValueError, match="real images' logits"):
        adversarial_g_loss("relativistic", _t(*fake))


def test_hinge_known_values() -> None:
    real, fake = _t(0.5, 2.0), _t(-2.0, 0.5)
    # D: mean(relu(1 - real)) + mean(relu(1 + fake)) = (0.5 + 0)/2 + (0 + 1.5)/2
    assert adversarial_d_loss("hinge", real, fake).item() == pytest.approx(1.0)
    assert adversarial_g_loss("hinge", fake).item() == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="not to hinge"):
        adversarial_d_loss("hinge", real, fake, real_label=0.9)


def test_relativistic_d_gradient_reaches_both_batches() -> None:
    real = _t(1.0, 3.0).requires_grad_(True)
    fake = _t(0.0, 2.0).requires_grad_(True)
    adversarial_d_loss("relativistic", real, fake).backward()
    assert real.grad is not None and fake.grad is not None
    # Raising real logits / lowering fake ones lowers L_D.
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    # G side: real logits are detached.
    real2 = _t(1.0, 3.0).requires_grad_(True)
    fake2 = _t(0.0, 2.0).requires_grad_(True)
    adversarial_g_loss("relativistic", fake2, real2).backward()
    assert real2.grad is None and (fake2.grad < 0).all()


def test_label_noise_targets() -> None:
    like = torch.zeros(20000, 1)
    assert discriminator_targets(True, like, real_label=0.9) == 0.9
    g = torch.Generator().manual_seed(0)
    flipped = discriminator_targets(True, like, label_flip=0.1, generator=g)
    assert isinstance(flipped, torch.Tensor) and flipped.shape == like.shape
    assert set(flipped.unique().tolist()) == {0.0, 1.0}
    assert (flipped == 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    fake = discriminator_targets(False, like, fake_label=0.0, label_jitter=0.2, generator=g)
    assert isinstance(fake, torch.Tensor)
    assert fake.min() >= 0 and fake.max() <= 0.2 and fake.std() > 0.05
    # Same seed, same noise.
    a = discriminator_targets(
        True, like, label_flip=0.2, generator=torch.Generator().manual_seed(3)
    )
    b = discriminator_targets(
        True, like, label_flip=0.2, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)  # type: ignore[arg-type]
    # The noisy loss is the BCE against those targets.
    logits = torch.randn(20000, 1)
    noisy = adversarial_d_loss(
        "vanilla", logits, logits, label_flip=0.2, generator=torch.Generator().manual_seed(4)
    )
    assert noisy.item() > adversarial_d_loss("vanilla", logits, logits).item() * 0.5


@pytest.mark.parametrize(
    "kwargs",
    [{"real_label": 1.2}, {"label_flip": 0.7}, {"label_jitter": -0.1}, {"real_label": 0.0}],
)
def test_bad_label_options(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        adversarial_d_loss("vanilla", _t(0.0), _t(0.0), **kwargs)
    with pytest.raises(ConfigError):
        AdversarialLoss("vanilla", nn.Linear(1, 1), **kwargs)


def test_unknown_kind_and_missing_discriminator() -> None:
    with pytest.raises(ConfigError, match="unknown adversarial loss kind"):
        adversarial_g_loss("wgan", _t(0.0))
    with pytest.raises(ConfigError, match="needs a discriminator"):
        build_loss([{"name": "l1"}, {"name": "adversarial", "weight": 5e-3}])


def _setup(kind: str) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    g = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))
    d = DISCRIMINATORS["srgan"](in_size=16, features=4, dense=8)
    lr = torch.rand(2, 3, 16, 16)
    hr = torch.rand(2, 3, 16, 16)
    return g, d, lr, hr


@pytest.mark.parametrize("kind", ["vanilla", "relativistic", "hinge"])
def test_generator_step_leaves_discriminator_untouched(kind: str) -> None:
    g, d, lr, hr = _setup(kind)
    specs = [
        {"name": "l1", "weight": 1.0},
        {"name": "adversarial", "weight": 0.1, "kind": kind},
    ]
    mix = build_loss(specs, discriminator=d)
    adv = adversarial_term(mix)
    assert isinstance(adv, AdversarialLoss) and adv.discriminator is d
    # The discriminator is not part of the mix (no .to()/state_dict/parameters leakage).
    assert not list(mix.parameters()) and not mix.state_dict()
    before = {k: v.clone() for k, v in d.named_parameters()}
    # Even an optimiser that (wrongly) also holds D's parameters cannot move them.
    opt = torch.optim.Adam(list(g.parameters()) + list(d.parameters()), lr=0.1)
    sr = g(lr)
    total, parts = mix(sr, hr)
    expected_adv = adversarial_g_loss(kind, d(sr), d(hr)).item()
    assert parts["adversarial"] == pytest.approx(expected_adv, rel=1e-5)
    opt.zero_grad()
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(p.grad is None for p in d.parameters())
    assert all(p.requires_grad for p in d.parameters())  # flags restored
    opt.step()
    for k, v in d.named_parameters():
        assert torch.equal(v, before[k]), k

    # Discriminator step: gradients reach D, not G.
    for p in g.parameters():
        p.grad = None
    loss_d = adv.discriminator_loss(d(hr), d(sr.detach()))
    loss_d.backward()
    assert all(p.grad is None for p in g.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


def test_adversarial_gradient_reaches_generator_output() -> None:
    _, d, _, hr = _setup("vanilla")
    loss = AdversarialLoss("relativistic", d)
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_spec_label_options_reach_the_d_step() -> None:
    _, d, _, _ = _setup("vanilla")
    specs = [
        {"name": "adversarial", "kind": "vanilla", "real_label": 0.9, "label_flip": 0.2, "seed": 1}
    ]
    real, fake = torch.randn(64, 1), torch.randn(64, 1)
    adv1 = adversarial_term(build_loss(specs, discriminator=d))
    adv2 = adversarial_term(build_loss(specs, discriminator=d))
    assert adv1 is not None and adv2 is not None
    seq1 = [adv1.discriminator_loss(real, fake).item() for _ in range(3)]
    seq2 = [adv2.discriminator_loss(real, fake).item() for _ in range(3)]
    assert seq1 == seq2 and len(set(seq1)) == 3  # seeded, and fresh noise each call
    expected = adversarial_d_loss(
        "vanilla",
        real,
        fake,
        real_label=0.9,
        label_flip=0.2,
        generator=torch.Generator().manual_seed(1),
    ).item()
    assert seq1[0] == pytest.approx(expected)
    assert LOSSES["adversarial"] is AdversarialLoss
    assert adversarial_term(build_loss([{"name": "l1"}])) is None


def test_frozen_restores_flags() -> None:
    m = nn.Linear(2, 2)
    m.bias.requires_grad_(False)
    with frozen(m):
        assert not any(p.requires_grad for p in m.parameters())
    assert m.weight.requires_grad and not m.bias.requires_grad


def test_under_autocast_float32_result() -> None:
    _, d, _, hr = _setup("vanilla")
    loss = AdversarialLoss("relativistic", d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(hr.flip(-1), hr)
        d_value = loss.discriminator_loss(d(hr), d(hr.flip(-1)))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert d_value.dtype == torch.float32 and torch.isfinite(d_value)
