"""SRResNet generator and SRGAN discriminator: Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", CVPR 2017.

Generator: conv 9x9 -> 64 + PReLU; B residual blocks (conv3x3-BN-PReLU-conv3x3-BN, identity
skip); conv3x3-BN plus a long skip from the head; upsampling by pixel-shuffle stages
(conv3x3 -> 4*64, shuffle x2, PReLU; for x3 one stage of 9*64, shuffle x3); conv 9x9 -> 3.
PReLU has one shared slope (PyTorch's default), BN is standard. Output is linear (the
zoo's [0, 1] convention; the paper's tanh/[-1, 1] scaling is a data-range choice).
Preset ``srresnet``: 16 blocks, 64 channels (~1.55M parameters at x4).
Variants for published checkpoints: ``body_end="prelu"`` (the conv after the blocks is
followed by a PReLU instead of BN) and ``output="tanh"`` (``(tanh(y) + 1) / 2``), both as in
leftthomas/SRGAN.

Discriminator (``srgan`` in DISCRIMINATORS): conv3x3 64 + LeakyReLU(0.2); seven
conv3x3-BN-LeakyReLU blocks with channels 64, 128, 128, 256, 256, 512, 512 and strides
2, 1, 2, 1, 2, 1, 2; dense 1024 + LeakyReLU(0.2); dense 1. Returns logits (the sigmoid
belongs to the loss). The dense layer fixes the input size (96 x 96 in the paper ->
512 x 6 x 6); ``adaptive_pool=True`` average-pools the features to that same grid first
so any input size works with the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
)
from sisr.archs._detect import Detection, Match, Miss, few, indices, rename
from sisr.archs.base import ArchInfo, Discriminator, SRModel
from sisr.errors import ConfigError

PAPER = (
    "C. Ledig et al., Photo-Realistic Single Image Super-Resolution Using a Generative "
    "Adversarial Network, CVPR 2017"
)


def upsample_factors(scale: int) -> list[int]:
    """Pixel-shuffle stages for ``scale``: powers of two as x2 stages, 3 as one x3 stage."""
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ConfigError(f"srresnet: scale {scale} is neither 3 nor a power of two")


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN with an identity skip. (N, C, H, W) -> same."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features),
            nn.PReLU(),
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRResNet(SRModel):
    """SRResNet (the SRGAN generator)."""

    arch_id = "srresnet"

    def __init__(
        self,
        scale: int = 4,
        blocks: int = 16,
        features: int = 64,
        body_end: str = "bn",
        output: str = "linear",
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        if blocks < 0 or features < 1:
            raise ConfigError(
                f"srresnet: need blocks >= 0 and features >= 1, got {blocks}, {features}"
            )
        if body_end not in ("bn", "prelu") or output not in ("linear", "tanh"):
            raise ConfigError(
                f"srresnet: body_end must be bn/prelu and output linear/tanh, got "
                f"{body_end!r}, {output!r}"
            )
        self.scale = scale
        self.blocks = blocks
        self.output = output
        self.hparams = {
            "scale": scale,
            "blocks": blocks,
            "features": features,
            "body_end": body_end,
            "output": output,
        }
        self.factors = upsample_factors(scale)
        self.head = nn.Sequential(nn.Conv2d(3, features, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(
            *(ResidualBlock(features) for _ in range(blocks)),
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features) if body_end == "bn" else nn.PReLU(),
        )
        up: list[nn.Module] = []
        for f in self.factors:
            up += [
                nn.Conv2d(features, features * f * f, 3, padding=1),
                nn.PixelShuffle(f),
                nn.PReLU(),
            ]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(features, 3, 9, padding=4)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, 3, sH, sW)."""
        feat = self.head(x)
        out = self.tail(self.upsample(feat + self.body(feat)))
        return (torch.tanh(out) + 1) / 2 if self.output == "tanh" else out

    def info(self) -> ArchInfo:
        span = through_conv(output_block(self.scale), 4)  # 9x9 tail
        for f in reversed(self.factors):
            span = through_conv(through_shuffle(span, f), 1)  # conv3x3 before each shuffle
        span = through_conv(span, 4 + 2 * self.blocks + 1)  # head, blocks, body conv
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=radius(span),
            paper=PAPER,
        )


def srresnet(*, scale: int, **overrides: Any) -> SRResNet:
    """Preset ``srresnet``: 16 residual blocks, 64 channels."""
    kw: dict[str, Any] = {"blocks": 16, "features": 64}
    kw.update(overrides)
    return SRResNet(scale=scale, **kw)


# leftthomas/SRGAN Generator names -> ours ({n}: residual blocks, {u}: upsampling stages).
def _leftthomas_rules(n: int, u: int) -> list[tuple[str, str]]:
    rules = [(r"block1\.(\d)\.(\w+)", r"head.\1.\2")]
    for k, part in (("conv1", 0), ("bn1", 1), ("prelu", 2), ("conv2", 3), ("bn2", 4)):
        rules.append((rf"block(\d+)\.{k}\.(\w+)", rf"body.B\1.body.{part}.\2"))
    rules += [(r"block7\.0\.(\w+)", rf"body.{n}.\1"), (r"block7\.1\.(\w+)", rf"body.{n + 1}.\1")]
    for i in range(u):
        rules.append((rf"block8\.{i}\.conv\.(\w+)", rf"upsample.{3 * i}.\1"))
        rules.append((rf"block8\.{i}\.prelu\.(\w+)", rf"upsample.{3 * i + 2}.\1"))
    rules.append((rf"block8\.{u}\.(\w+)", r"tail.\1"))
    return rules


def _from_leftthomas(sd: Mapping[str, Tensor]) -> dict[str, Tensor] | str:
    """Rename a leftthomas/SRGAN generator state dict (block1 .. block8)."""
    res = [i for i in indices(sd, r"block(\d+)\.conv1\.weight$")]
    if res != list(range(2, 2 + len(res))) or "block7.0.weight" not in sd:
        return "residual blocks are not block2 .. block(n+1) followed by block7"
    # leftthomas numbers the residual blocks block2..block6; shift them to body.0..
    ups = len(indices(sd, r"block8\.(\d+)\.conv\.weight$"))
    out, left = rename(sd, _leftthomas_rules(len(res), ups))
    if left:
        return f"unexpected tensors {few(left)}"
    fixed: dict[str, Tensor] = {}
    for key, value in out.items():
        if key.startswith("body.B"):
            num, rest = key[len("body.B") :].split(".", 1)
            key = f"body.{int(num) - 2}.{rest}"
        fixed[key] = value
    return fixed


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """SRResNet: sisr's names or leftthomas/SRGAN's (BN blocks, PReLU, tanh output)."""
    layout = "native"
    hp: dict[str, Any] = {}
    if "block1.0.weight" in sd and "block8.0.conv.weight" in sd:
        layout = "leftthomas"
        renamed = _from_leftthomas(sd)
        if isinstance(renamed, str):
            return Miss(SRResNet.arch_id, layout, renamed)
        sd = renamed
        hp["output"] = "tanh"  # its forward returns (tanh(y) + 1) / 2
    elif not ("head.0.weight" in sd and "upsample.0.weight" in sd and "tail.weight" in sd):
        return None
    blocks = len(indices(sd, r"body\.(\d+)\.body\.0\.weight$"))
    f = int(sd["head.0.weight"].shape[0])
    hp["body_end"] = "bn" if f"body.{blocks + 1}.running_mean" in sd else "prelu"
    ups = [
        int(sd[f"upsample.{i}.weight"].shape[0])
        for i in indices(sd, r"upsample\.(\d+)\.weight$")
        if sd[f"upsample.{i}.weight"].dim() == 4
    ]
    if ups == [9 * f]:
        scale = 3
    elif ups and all(o == 4 * f for o in ups):
        scale = 2 ** len(ups)
    else:
        return Miss(SRResNet.arch_id, layout, f"upsampling convs with {ups} outputs fit no scale")
    return Match(SRResNet.arch_id, {"blocks": blocks, "features": f, **hp}, dict(sd), layout, scale)


# (out_channels, stride) of the seven BN blocks after the first conv.
_DISC_BLOCKS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


class SRGANDiscriminator(Discriminator):
    """SRGAN discriminator: (N, 3, in_size, in_size) -> logits (N, 1)."""

    arch_id = "srgan"

    def __init__(
        self,
        in_size: int = 96,
        features: int = 64,
        adaptive_pool: bool = False,
        dense: int = 1024,
    ) -> None:
        super().__init__()
        if in_size < 16 or in_size % 16 != 0:
            raise ConfigError(f"srgan: in_size must be a positive multiple of 16, got {in_size}")
        if features < 1 or dense < 1:
            raise ConfigError(f"srgan: need features, dense >= 1, got {features}, {dense}")
        self.in_size = in_size
        self.adaptive_pool = bool(adaptive_pool)
        self.hparams = {
            "in_size": in_size,
            "features": features,
            "adaptive_pool": self.adaptive_pool,
            "dense": dense,
        }
        layers: list[nn.Module] = [
            nn.Conv2d(3, features, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = features
        for mult, stride in _DISC_BLOCKS:
            out = features * mult
            layers += [
                nn.Conv2d(ch, out, 3, stride=stride, padding=1),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch = out
        self.features = nn.Sequential(*layers)
        self.grid = in_size // 16
        self.pool = nn.AdaptiveAvgPool2d(self.grid) if self.adaptive_pool else nn.Identity()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(ch * self.grid * self.grid, dense),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(dense, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, 1) logits. H = W = in_size unless ``adaptive_pool``."""
        if not self.adaptive_pool and tuple(x.shape[-2:]) != (self.in_size, self.in_size):
            raise ConfigError(
                f"srgan discriminator was built for {self.in_size}x{self.in_size} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]}; set in_size to the patch size or "
                "adaptive_pool=True"
            )
        return self.classifier(self.pool(self.features(x)))


def srgan(**overrides: Any) -> SRGANDiscriminator:
    """Discriminator preset ``srgan``: the paper's network for 96x96 patches."""
    return SRGANDiscriminator(**overrides)


__all__ = [
    "ResidualBlock",
    "SRGANDiscriminator",
    "SRResNet",
    "detect",
    "srgan",
    "srresnet",
    "upsample_factors",
]
