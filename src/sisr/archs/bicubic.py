"""Parameter-free MATLAB bicubic upsampling as a zoo model (the baseline every table has)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sisr.archs._common import STANDARD_SCALES, bicubic_radius, bicubic_upsample
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

# Largest scale: x16 already turns a 1000 px image into 16000 px; beyond, the output of
# any real input would not fit in memory (a file asking for x1000 wants 12 GB for 24x32).
MAX_SCALE = 16


class Bicubic(SRModel):
    """MATLAB ``imresize(x, s, 'bicubic')``; no parameters. Integer scale 1 to ``MAX_SCALE``."""

    arch_id = "bicubic"

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
            raise ConfigError(
                f"bicubic: scale must be an integer from 1 to {MAX_SCALE}, got {scale!r}"
            )
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


__all__ = ["MAX_SCALE", "Bicubic", "bicubic"]
