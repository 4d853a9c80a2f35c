"""PAN: Zhao, Kong, He, Qiao, Dong, "Efficient Image Super-Resolution Using Pixel
Attention", ECCV Workshops (AIM 2020) 2020 -- the smallest entry of the AIM 2020 efficient
SR challenge (272K parameters at x4).

Structure (names as in the official code, zhaohengyuan1/PAN, so its files load unchanged):

* ``conv_first``: conv3x3 3 -> F;
* ``SCPA_trunk.{i}`` (16 blocks): self-calibrated convolution with pixel attention. Two
  1x1 convs (``conv1_a`` / ``conv1_b``, F -> B, no bias) split the features; branch a is a
  plain 3x3 conv (``k1.0``), branch b a *PA conv*: ``k4(k3(y) * sigmoid(k2(y)))`` (3x3,
  1x1 with bias, 3x3); each conv and each branch output is followed by LeakyReLU(0.2);
  ``conv3`` (1x1, 2B -> F, no bias) fuses them and the block input is added;
* ``trunk_conv``: conv3x3 after the trunk, plus a long skip from ``conv_first``;
* U-PA upsampling, one stage per factor (x2 / x3: one stage; x4: two x2 stages):
  nearest-neighbour interpolation, ``upconv{k}`` (3x3, F -> U, then U -> U), pixel
  attention ``att{k}`` (``x * sigmoid(conv1x1(x))``) and ``HRconv{k}`` (3x3), each followed
  by LeakyReLU(0.2);
* ``conv_last``: conv3x3 U -> 3, plus the bilinearly upsampled input (global residual).

The official code works on RGB in [0, 1] with no mean shift, as sisr does. x2 and x3
networks have the same tensors (nearest interpolation has no weights), so a file's scale
is only known from its name or the user. Preset ``pan``: F = 40, U = 24, 16 blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import positive_int
from sisr.archs._common import (
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
    union,
)
from sisr.archs._detect import Detection, Match, Miss, few, indices
from sisr.archs.base import ArchInfo, SRModel

PAPER = (
    "H. Zhao, X. Kong, J. He, Y. Qiao, C. Dong, Efficient Image Super-Resolution Using "
    "Pixel Attention, ECCV Workshops (AIM) 2020"
)
SCALES: tuple[int, ...] = (2, 3, 4)
SLOPE = 0.2  # LeakyReLU negative slope throughout


def upsampling_stages(scale: int) -> list[int]:
    """Interpolation factor of each U-PA stage, input side first ([2, 2] for x4)."""
    return [2, 2] if scale == 4 else [scale]


class PixelAttention(nn.Module):
    """PA: ``x * sigmoid(conv1x1(x))``, one attention weight per pixel and channel.

    (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """``k4(k3(x) * sigmoid(k2(x)))``: a 3x3 conv gated by pixel attention, then a 3x3 conv.

    (N, B, H, W) -> (N, B, H, W); ``k2`` is 1x1 with bias, ``k3`` / ``k4`` 3x3 without.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.k2 = nn.Conv2d(channels, channels, 1)
        self.k3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention. (N, F, H, W) -> (N, F, H, W).

    ``x + conv3([lrelu(k1(lrelu(conv1_a(x)))), lrelu(PAConv(lrelu(conv1_b(x))))])`` with B
    channels in each branch (F / 2 in the paper).
    """

    def __init__(self, channels: int, branch: int) -> None:
        super().__init__()
        self.conv1_a = nn.Conv2d(channels, branch, 1, bias=False)
        self.conv1_b = nn.Conv2d(channels, branch, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(branch, branch, 3, padding=1, bias=False))
        self.PAConv = PAConv(branch)
        self.conv3 = nn.Conv2d(2 * branch, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = F.leaky_relu(self.k1(F.leaky_relu(self.conv1_a(x), SLOPE)), SLOPE)
        b = F.leaky_relu(self.PAConv(F.leaky_relu(self.conv1_b(x), SLOPE)), SLOPE)
        return self.conv3(torch.cat([a, b], 1)) + x


class PAN(SRModel):
    """Pixel attention network (x2, x3, x4)."""

    arch_id = "pan"

    def __init__(
        self,
        scale: int = 4,
        num_features: int = 40,
        up_features: int = 24,
        num_blocks: int = 16,
        branch_features: int | None = None,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "num_features", num_features)
        positive_int(self.arch_id, "up_features", up_features)
        positive_int(self.arch_id, "num_blocks", num_blocks, minimum=0)
        if branch_features is None:
            branch_features = max(1, num_features // 2)
        positive_int(self.arch_id, "branch_features", branch_features)
        self.scale = scale
        self.num_blocks = num_blocks
        self.stages = upsampling_stages(scale)
        self.hparams = {
            "scale": scale,
            "num_features": num_features,
            "up_features": up_features,
            "num_blocks": num_blocks,
            "branch_features": branch_features,
        }
        f, u = num_features, up_features
        self.conv_first = nn.Conv2d(3, f, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*(SCPA(f, branch_features) for _ in range(num_blocks)))
        self.trunk_conv = nn.Conv2d(f, f, 3, padding=1)
        for k in range(1, len(self.stages) + 1):
            self.add_module(f"upconv{k}", nn.Conv2d(f if k == 1 else u, u, 3, padding=1))
            self.add_module(f"att{k}", PixelAttention(u))
            self.add_module(f"HRconv{k}", nn.Conv2d(u, u, 3, padding=1))
        self.conv_last = nn.Conv2d(u, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        for k, factor in enumerate(self.stages, start=1):
            fea = F.interpolate(fea, scale_factor=factor, mode="nearest")
            fea = getattr(self, f"upconv{k}")(fea)
            fea = F.leaky_relu(getattr(self, f"att{k}")(fea), SLOPE)
            fea = F.leaky_relu(getattr(self, f"HRconv{k}")(fea), SLOPE)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.conv_last(fea) + base

    def info(self) -> ArchInfo:
        block = output_block(self.scale)
        span = through_conv(block, 1)  # conv_last
        for factor in reversed(self.stages):
            # HRconv and upconv (3x3 each; att is 1x1), then nearest: fine y <- coarse y // f.
            span = through_shuffle(through_conv(span, 2), factor)
        # trunk_conv, two 3x3 convs a block (k3, k4 on branch b), conv_first.
        span = through_conv(span, 1 + 2 * self.num_blocks + 1)
        # Bilinear x s reads the two nearest LR pixels: at most one beyond on each side.
        base = (block[0] // self.scale - 1, block[1] // self.scale + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(union(span, base)),
            # On natural [0, 1] images (noisy ones included) the published weights keep
            # features below ~10 and fp16 is within 0.003 of fp32. Inputs far from natural
            # statistics (values outside [0, 1], uniform noise) blow them up (~1e19 in fp32,
            # the authors' code too): there any precision's output is meaningless.
            half_safe=True,
            paper=PAPER,
        )


def pan(*, scale: int, **overrides: Any) -> PAN:
    """Preset ``pan``: 40 features, 24 upsampling features, 16 SCPA blocks (272K at x4)."""
    kw: dict[str, Any] = {"num_features": 40, "up_features": 24, "num_blocks": 16}
    kw.update(overrides)
    return PAN(scale=scale, **kw)


_PREFIXES = (
    "conv_first.",
    "SCPA_trunk.",
    "trunk_conv.",
    "upconv1.",
    "att1.",
    "HRconv1.",
    "upconv2.",
    "att2.",
    "HRconv2.",
    "conv_last.",
)


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """The official PAN layout (``conv_first``, ``SCPA_trunk.{i}``, ``upconv1``, ``att1``,
    ``HRconv1`` [, stage 2], ``conv_last``). x4 has a second stage; x2 and x3 files are
    identical in shape, so their scale is left to the caller."""
    if "SCPA_trunk.0.conv1_a.weight" not in sd and "att1.conv.weight" not in sd:
        return None
    layout = "official"
    need = ("conv_first.weight", "upconv1.weight", "att1.conv.weight", "conv_last.weight")
    if missing := [k for k in need if k not in sd]:
        return Miss(PAN.arch_id, layout, f"missing tensors {few(missing)}")
    if extra := [k for k in sd if not k.startswith(_PREFIXES)]:
        return Miss(PAN.arch_id, layout, f"unexpected tensors {few(extra)}")
    first, up1, last = sd["conv_first.weight"], sd["upconv1.weight"], sd["conv_last.weight"]
    if first.dim() != 4 or first.shape[1] != 3 or last.dim() != 4 or last.shape[0] != 3:
        return Miss(
            PAN.arch_id,
            layout,
            f"conv_first {tuple(first.shape)} / conv_last {tuple(last.shape)} are not RGB in/out",
        )
    hp: dict[str, Any] = {
        "num_features": int(first.shape[0]),
        "up_features": int(up1.shape[0]),
        "num_blocks": len(indices(sd, r"SCPA_trunk\.(\d+)\.")),
    }
    if "SCPA_trunk.0.conv1_a.weight" in sd:
        hp["branch_features"] = int(sd["SCPA_trunk.0.conv1_a.weight"].shape[0])
    scale = 4 if "upconv2.weight" in sd else None
    notes = () if scale else ("x2 and x3 files have the same tensors: x2 or x3",)
    return Match(PAN.arch_id, hp, dict(sd), layout, scale, notes)


__all__ = ["PAN", "SCPA", "PAConv", "PixelAttention", "detect", "pan", "upsampling_stages"]
