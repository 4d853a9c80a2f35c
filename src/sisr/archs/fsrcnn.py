"""FSRCNN: Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural
Network", ECCV 2016.

On the LR image: feature extraction conv 5x5 -> d, shrinking conv 1x1 -> s, m mapping
convs 3x3 -> s, expanding conv 1x1 -> d (each followed by PReLU), then a 9x9 transposed
convolution with stride = scale to the output channels. Presets: ``fsrcnn`` = FSRCNN(56, 12, 4),
``fsrcnn-s`` = FSRCNN-s(32, 5, 1). Paper notation d, s, m is ``features``, ``shrink``,
``maps`` here. The paper worked on Y only: ``y_channel=True`` reproduces that.

Deconvolution geometry: ``ConvTranspose2d(k=9, stride=s, padding=p, output_padding=op)``
gives ``(H - 1) s - 2p + 9 + op`` rows; ``p = ceil((9 - s) / 2)``, ``op = 2p - (9 - s)``
makes that exactly ``sH`` and centres the kernel on the LR pixel (exactly for odd s, half an
HR pixel off for even s, the best any integer padding can do).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sisr.archs._color import luma_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_deconv,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "C. Dong, C. C. Loy, X. Tang, Accelerating the Super-Resolution Convolutional Neural "
    "Network, ECCV 2016"
)
DECONV_KERNEL = 9


def deconv_geometry(scale: int, kernel: int = DECONV_KERNEL) -> tuple[int, int]:
    """(padding, output_padding) so a stride-``scale`` transposed conv outputs exactly s x input."""
    if kernel < scale:
        raise ConfigError(f"fsrcnn: deconv kernel {kernel} is smaller than the scale {scale}")
    padding = (kernel - scale + 1) // 2
    return padding, 2 * padding - (kernel - scale)


class FSRCNN(SRModel):
    """FSRCNN(d, s, m) with PReLU and a stride-``scale`` 9x9 deconvolution."""

    arch_id = "fsrcnn"

    def __init__(
        self,
        scale: int = 3,
        features: int = 56,
        shrink: int = 12,
        maps: int = 4,
        y_channel: bool = False,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        if features < 1 or shrink < 1 or maps < 0:
            raise ConfigError(
                f"fsrcnn: need features, shrink >= 1 and maps >= 0, got {features}, {shrink}, "
                f"{maps}"
            )
        self.scale = scale
        self.y_channel = bool(y_channel)
        self.maps = maps
        self.hparams = {
            "scale": scale,
            "features": features,
            "shrink": shrink,
            "maps": maps,
            "y_channel": self.y_channel,
        }
        ch = 1 if self.y_channel else 3
        layers: list[nn.Module] = [
            nn.Conv2d(ch, features, 5, padding=2),
            nn.PReLU(features),
            nn.Conv2d(features, shrink, 1),
            nn.PReLU(shrink),
        ]
        for _ in range(maps):
            layers += [nn.Conv2d(shrink, shrink, 3, padding=1), nn.PReLU(shrink)]
        layers += [nn.Conv2d(shrink, features, 1), nn.PReLU(features)]
        self.body = nn.Sequential(*layers)
        self.padding, self.output_padding = deconv_geometry(scale)
        self.deconv = nn.ConvTranspose2d(
            features,
            ch,
            DECONV_KERNEL,
            stride=scale,
            padding=self.padding,
            output_padding=self.output_padding,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # Paper: convs use He initialisation for PReLU (a = 0.25), the deconv a zero-mean
        # Gaussian with std 0.001; biases zero.
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.deconv.weight, std=0.001)
        nn.init.zeros_(self.deconv.bias)

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB)."""
        return self.deconv(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        return self._sr(x)

    def info(self) -> ArchInfo:
        span = through_deconv(output_block(self.scale), DECONV_KERNEL, self.scale, self.padding)
        span = through_conv(span, 2 + self.maps)  # 5x5 extraction + m 3x3 maps; 1x1s add none
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=radius(span),
            paper=PAPER,
        )


def fsrcnn(*, scale: int, **overrides: Any) -> FSRCNN:
    """Preset ``fsrcnn``: FSRCNN(56, 12, 4)."""
    kw: dict[str, Any] = {"features": 56, "shrink": 12, "maps": 4}
    kw.update(overrides)
    return FSRCNN(scale=scale, **kw)


def fsrcnn_s(*, scale: int, **overrides: Any) -> FSRCNN:
    """Preset ``fsrcnn-s``: FSRCNN-s(32, 5, 1), the real-time small model."""
    kw: dict[str, Any] = {"features": 32, "shrink": 5, "maps": 1}
    kw.update(overrides)
    return FSRCNN(scale=scale, **kw)


__all__ = ["FSRCNN", "deconv_geometry", "fsrcnn", "fsrcnn_s"]
