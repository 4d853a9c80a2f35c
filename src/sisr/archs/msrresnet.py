"""MSRResNet: BasicSR's "modified SRResNet" (Wang et al., the ESRGAN paper's PSNR-oriented
baseline; ECCV Workshops 2018), used by BasicSR's ``001_MSRResNet_x4`` models.

SRResNet without batch norm: conv3x3 -> LeakyReLU(0.1); ``num_block`` residual blocks
(conv-ReLU-conv, identity skip); pixel-shuffle upsampling (x2 / x3: one conv to F*s^2 +
shuffle; x4: two x2 stages), each followed by LeakyReLU; conv_hr + LeakyReLU; conv_last; and
the bilinearly upsampled input added (``align_corners=False``). Names are BasicSR's
(``conv_first``, ``body.{i}.conv{1,2}``, ``upconv1``, ``upconv2``, ``conv_hr``,
``conv_last``), so its state dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    "X. Wang et al., ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks, "
    "ECCV Workshops 2018 (BasicSR MSRResNet, the SRResNet baseline without batch norm)"
)
SCALES: tuple[int, ...] = (2, 3, 4)


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``. (N, F, H, W) -> same."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(SRModel):
    """BasicSR MSRResNet (x2, x3, x4)."""

    arch_id = "msrresnet"

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 16) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "num_feat", num_feat)
        positive_int(self.arch_id, "num_block", num_block, minimum=0)
        self.scale = scale
        self.num_block = num_block
        self.hparams = {"scale": scale, "num_feat": num_feat, "num_block": num_block}
        self.stages = [2, 2] if scale == 4 else [scale]
        f = num_feat
        self.conv_first = nn.Conv2d(3, f, 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlockNoBN(f) for _ in range(num_block)))
        for i, s in enumerate(self.stages, start=1):
            self.add_module(f"upconv{i}", nn.Conv2d(f, f * s * s, 3, padding=1))
        self.conv_hr = nn.Conv2d(f, f, 3, padding=1)
        self.conv_last = nn.Conv2d(f, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        out = self.body(F.leaky_relu(self.conv_first(x), 0.1))
        for i, s in enumerate(self.stages, start=1):
            out = F.leaky_relu(F.pixel_shuffle(getattr(self, f"upconv{i}")(out), s), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out + base

    def info(self) -> ArchInfo:
        block = output_block(self.scale)
        span = through_conv(block, 2)  # conv_hr, conv_last
        for s in reversed(self.stages):
            span = through_conv(through_shuffle(span, s), 1)
        span = through_conv(span, 1 + 2 * self.num_block)
        # Bilinear x s reads the two nearest LR pixels: at most one beyond on each side.
        base = (block[0] // self.scale - 1, block[1] // self.scale + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(union(span, base)),
            paper=PAPER,
        )


def msrresnet(*, scale: int, **overrides: Any) -> MSRResNet:
    """Preset ``msrresnet``: 16 blocks, 64 features (BasicSR 001_MSRResNet, 1.5M params)."""
    kw: dict[str, Any] = {"num_feat": 64, "num_block": 16}
    kw.update(overrides)
    return MSRResNet(scale=scale, **kw)


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """conv_first, body.{i}.conv1/conv2, upconv1[, upconv2], conv_hr, conv_last (BasicSR)."""
    if not ("conv_first.weight" in sd and "upconv1.weight" in sd and "conv_hr.weight" in sd):
        return None
    allowed = ("conv_first.", "body.", "upconv1.", "upconv2.", "conv_hr.", "conv_last.")
    if extra := [k for k in sd if not k.startswith(allowed)]:
        return Miss(MSRResNet.arch_id, "basicsr", f"unexpected tensors {few(extra)}")
    f = int(sd["conv_first.weight"].shape[0])
    up1 = int(sd["upconv1.weight"].shape[0])
    if "upconv2.weight" in sd:
        scale = 4 if up1 == 4 * f else None
    else:
        scale = {4 * f: 2, 9 * f: 3}.get(up1)
    if scale is None:
        return Miss(MSRResNet.arch_id, "basicsr", f"upconv1 has {up1} outputs for {f} features")
    blocks = len(indices(sd, r"body\.(\d+)\.conv1\.weight$"))
    return Match(
        MSRResNet.arch_id, {"num_feat": f, "num_block": blocks}, dict(sd), "basicsr", scale
    )


__all__ = ["MSRResNet", "ResidualBlockNoBN", "detect", "msrresnet"]
