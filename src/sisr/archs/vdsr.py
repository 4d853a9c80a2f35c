"""VDSR: Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016.

Twenty 3x3 convolutions of 64 channels (ReLU after all but the last) on the
bicubic-upsampled image, predicting the residual that is added back to that upsample.
Zero padding keeps the size, as in the paper. He initialisation, as in the paper.
The paper worked on Y only: ``y_channel=True`` reproduces that (~0.67M parameters either way).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sisr.archs._color import luma_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    bicubic_upsample,
    check_scale,
    pre_upsampling_radius,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "J. Kim, J. K. Lee, K. M. Lee, Accurate Image Super-Resolution Using Very Deep "
    "Convolutional Networks, CVPR 2016"
)


class VDSR(SRModel):
    """``depth`` 3x3 convs with a global residual on the bicubic upsample."""

    arch_id = "vdsr"

    def __init__(
        self,
        scale: int = 4,
        depth: int = 20,
        features: int = 64,
        y_channel: bool = False,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        if depth < 2 or features < 1:
            raise ConfigError(f"vdsr: need depth >= 2 and features >= 1, got {depth}, {features}")
        self.scale = scale
        self.depth = depth
        self.y_channel = bool(y_channel)
        self.hparams = {
            "scale": scale,
            "depth": depth,
            "features": features,
            "y_channel": self.y_channel,
        }
        ch = 1 if self.y_channel else 3
        layers: list[nn.Module] = [nn.Conv2d(ch, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, ch, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB)."""
        up = bicubic_upsample(x, self.scale)
        return up + self.body(up)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        return self._sr(x)

    def info(self) -> ArchInfo:
        # The skip (radius 0 on the HR grid) is inside the conv stack's span.
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=pre_upsampling_radius(self.scale, self.depth),
            paper=PAPER,
        )


def vdsr(*, scale: int, **overrides: Any) -> VDSR:
    """Preset ``vdsr``: 20 layers of 64 channels."""
    kw: dict[str, Any] = {"depth": 20, "features": 64}
    kw.update(overrides)
    return VDSR(scale=scale, **kw)


__all__ = ["VDSR", "vdsr"]
