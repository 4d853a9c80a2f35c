"""count_params / count_inference_params / macs_per_output_pixel against hand formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from sisr.archs import build
from sisr.archs.complexity import (
    count_inference_params,
    count_macs,
    count_params,
    layer_macs,
    macs_per_output_pixel,
)


class _Net(nn.Module):
    """x2 net exercising conv, weight-normed conv, grouped transposed conv and a Linear gate.

    (1, 3, H, W) -> (1, 3, 2H, 2W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = weight_norm(nn.Conv2d(8, 8, 5, padding=2))
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, groups=2)
        self.gate = nn.Linear(4, 4)
        self.out = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(torch.relu(self.c2(self.c1(x))))
        g = torch.sigmoid(self.gate(y.mean(dim=(2, 3))))[:, :, None, None]
        return self.out(y * g)


def _expected_macs(h: int, w: int) -> int:
    lr, hr = h * w, 4 * h * w
    return (
        lr * 8 * 3 * 9  # c1
        + lr * 8 * 8 * 25  # c2 (weight norm does not change the arithmetic)
        + lr * 8 * (4 // 2) * 16  # grouped deconv: each input element -> (C_out/g) * k*k
        + 4 * 4  # gate on the pooled vector
        + hr * 3 * 4  # out
    )


def test_macs_match_hand_formula() -> None:
    net = _Net()
    total, pixels = count_macs(net, (5, 7))
    assert pixels == 10 * 14
    assert total == _expected_macs(5, 7)
    assert macs_per_output_pixel(net, (5, 7)) == pytest.approx(_expected_macs(5, 7) / 140)


def test_training_flag_restored_and_meta_device() -> None:
    net = _Net().train()
    count_macs(net, (4, 4))
    assert net.training
    with torch.device("meta"):
        meta = _Net()
    assert count_macs(meta, (5, 7))[0] == _expected_macs(5, 7)


def test_functional_conv_is_counted() -> None:
    """Convs with computed weights (re-parameterised blocks) must count like nn.Conv2d."""

    class Fused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Parameter(torch.randn(6, 3, 3, 3))
            self.b = nn.Parameter(torch.randn(6, 3, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, self.a + self.b, padding=1)[:, :3]

    assert count_macs(Fused(), (4, 5))[0] == 20 * 6 * 3 * 9


def test_layer_formula_agrees_with_dispatch_count() -> None:
    """On module-only networks the per-module formula equals the dispatcher count."""
    for name, scale in [("espcn", 3), ("fsrcnn", 4), ("srresnet", 2), ("wdsr-b", 2)]:
        with torch.device("meta"):
            model = build(name, scale).eval()
        total = 0

        def hook(m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            nonlocal total
            total += layer_macs(m, args[0], out)

        layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
        with torch.no_grad():
            model(torch.rand(1, 3, 12, 10, device="meta"))
        for h in handles:
            h.remove()
        assert count_macs(model, (12, 10))[0] == total, name


def test_published_topologies() -> None:
    """SRCNN 9-5-5 / 9-1-5 (RGB, on the upsampled image) and EDSR baseline x2, by hand."""
    with torch.device("meta"):
        srcnn = build("srcnn", 3, y_channel=False)
        srcnn915 = build("srcnn-915", 3, y_channel=False)
        edsr = build("edsr-baseline", 2)
    assert (
        macs_per_output_pixel(srcnn, (9, 11)) == 9 * 9 * 3 * 64 + 5 * 5 * 64 * 32 + 5 * 5 * 32 * 3
    )
    assert macs_per_output_pixel(srcnn915, (9, 11)) == 9 * 9 * 3 * 64 + 64 * 32 + 5 * 5 * 32 * 3
    # Per LR pixel: mean shift, head, 16 blocks x 2 convs, body conv, x2 upsampler conv;
    # per HR pixel: the output conv and the mean shift back.
    per_lr = 9 + 3 * 64 * 9 + 33 * 64 * 64 * 9 + 64 * 256 * 9
    per_hr = 64 * 3 * 9 + 9
    assert macs_per_output_pixel(edsr, (8, 8)) == pytest.approx(per_lr / 4 + per_hr)


def test_param_counts() -> None:
    net = _Net()
    every = sum(p.numel() for p in net.parameters())
    assert count_params(net) == every
    net.c1.weight.requires_grad_(False)
    assert count_params(net) == every - net.c1.weight.numel()
    # Inference count: frozen weights still count, weight norm's gain g (8) does not.
    assert count_inference_params(net) == every - 8
    shared = nn.Sequential(net.c1, net.c1)
    assert count_params(shared) == count_params(net.c1)
