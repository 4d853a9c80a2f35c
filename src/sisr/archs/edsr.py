"""EDSR: Lim, Son, Kim, Nah, Lee, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017 (NTIRE 2017 winner).

Head conv -> ``num_blocks`` residual blocks (conv-ReLU-conv, no batch norm, output scaled
by ``res_scale``) -> conv, plus a long skip from the head -> pixel-shuffle upsampler -> conv.
Presets: ``edsr-baseline`` (16 blocks x 64 features, res_scale 1, 1.37M params at x2) and
``edsr`` (32 x 256, res_scale 0.1, 43M at x4).

Value range: the official code (EDSR-PyTorch) works on [0, 255] images and shifts by the
DIV2K mean times ``rgb_range``. This module takes [0, 1] and multiplies by ``rgb_range`` on
the way in and divides on the way out, so with the default ``rgb_range=255`` official
weights load unchanged (the module and parameter names are the official ones: ``sub_mean``,
``add_mean``, ``head.0``, ``body.{i}.body.{0,2}``, ``body.{n}``, ``tail.0.{0,2,..}``,
``tail.1``) and give the official outputs divided by 255.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from sisr.archs._blocks import (
    DIV2K_RGB_MEAN,
    MeanShift,
    add_scaled_residual,
    positive_int,
    rgb_triplet,
    upsampler,
    upsampler_stages,
)
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, Enhanced Deep Residual Networks for Single "
    "Image Super-Resolution, CVPR Workshops (NTIRE) 2017"
)


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))``, no batch norm. (N, F, H, W) -> same."""

    def __init__(self, num_features: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: Tensor) -> Tensor:
        return add_scaled_residual(self.body(x), x, self.res_scale)


class EDSR(SRModel):
    """Single-scale EDSR (the MDSR multi-scale variant is not implemented)."""

    arch_id = "edsr"

    def __init__(
        self,
        scale: int = 4,
        num_blocks: int = 16,
        num_features: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        positive_int(self.arch_id, "num_blocks", num_blocks, minimum=0)
        positive_int(self.arch_id, "num_features", num_features)
        if not float(rgb_range) > 0:
            raise ConfigError(f"edsr: rgb_range must be > 0, got {rgb_range!r}")
        mean = rgb_triplet("edsr: rgb_mean", rgb_mean)
        self.scale = scale
        self.num_blocks = num_blocks
        self.rgb_range = float(rgb_range)
        self.hparams = {
            "scale": scale,
            "num_blocks": num_blocks,
            "num_features": num_features,
            "res_scale": float(res_scale),
            "rgb_range": self.rgb_range,
            "rgb_mean": mean,
        }
        f = num_features
        self.sub_mean = MeanShift(self.rgb_range, mean, sign=-1)
        self.add_mean = MeanShift(self.rgb_range, mean, sign=1)
        self.head = nn.Sequential(nn.Conv2d(3, f, 3, padding=1))
        self.body = nn.Sequential(
            *(ResBlock(f, res_scale) for _ in range(num_blocks)),
            nn.Conv2d(f, f, 3, padding=1),
        )
        self.tail = nn.Sequential(upsampler(scale, f), nn.Conv2d(f, 3, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        x = self.body(x) + x
        x = self.add_mean(self.tail(x))
        return x / self.rgb_range

    def info(self) -> ArchInfo:
        # Backwards: last conv on the HR grid, then each upsampler stage (shuffle, conv),
        # then the body (two convs a block plus one) and the head.
        span = through_conv(output_block(self.scale), 1)
        for factor in reversed(upsampler_stages(self.scale)):
            span = through_conv(through_shuffle(span, factor), 1)
        span = through_conv(span, 2 * self.num_blocks + 1 + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=radius(span),
            # Official weights run at rgb_range 255, so features reach the hundreds; that
            # is far from fp16's 65504 limit and bf16 has fp32's range, so both are safe.
            half_safe=True,
            paper=PAPER,
        )


def edsr_baseline(*, scale: int, **overrides: object) -> EDSR:
    """Preset ``edsr-baseline``: 16 blocks x 64 features, res_scale 1 (1.37M params at x2)."""
    kw: dict[str, object] = {"num_blocks": 16, "num_features": 64, "res_scale": 1.0}
    kw.update(overrides)
    return EDSR(scale=scale, **kw)  # type: ignore[arg-type]


def edsr(*, scale: int, **overrides: object) -> EDSR:
    """Preset ``edsr``: 32 blocks x 256 features, res_scale 0.1 (43M params at x4)."""
    kw: dict[str, object] = {"num_blocks": 32, "num_features": 256, "res_scale": 0.1}
    kw.update(overrides)
    return EDSR(scale=scale, **kw)  # type: ignore[arg-type]


__all__ = ["EDSR", "ResBlock", "edsr", "edsr_baseline"]
