"""Parameter-free MATLAB bicubic upsampling as a zoo model (the baseline every table has)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sisr.archs._common import STANDARD_SCALES, bicubic_radius, bicubic_upsample
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError


class Bicubic(SRModel):
    """MATLAB ``imresize(x, s, 'bicubic')``; no parameters. Any integer scale >= 1."""

    arch_id = "bicubic"

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ConfigError(f"bicubic: scale must be a positive integer, got {scale!r}")
        self.scale = scale
        self.hparams = {"scale": scale}

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, 3, sH, sW)."""
        return bicubic_upsample(x, self.scale)

    def info(self) -> ArchInfo:
        scales = tuple(sorted({*STANDARD_SCALES, self.scale}))
        return ArchInfo(
            arch_id=self.arch_id,
            scales=scales,
            receptive_radius=bicubic_radius(self.scale) if self.scale > 1 else 0,
            paper="R. Keys, Cubic convolution interpolation for digital image processing, "
            "IEEE TASSP 1981 (MATLAB imresize)",
        )


def bicubic(*, scale: int, **overrides: Any) -> Bicubic:
    """Preset ``bicubic``."""
    return Bicubic(scale=scale, **overrides)


__all__ = ["Bicubic", "bicubic"]
