"""ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016.

On the LR image: conv 5x5 -> 64, conv 3x3 -> 32 (tanh after each, as the paper chose tanh
over ReLU), conv 3x3 -> channels * s^2, then a pixel shuffle (the sub-pixel convolution).
Preset ``espcn`` is the paper's (f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3.
``activation="relu"`` is offered because later re-implementations found it trains faster.
The paper worked on Y only: ``y_channel=True`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from sisr.archs._color import YCBCR_NOTE, check_color_space, luma_sr, ycbcr_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
)
from sisr.archs._detect import (
    BY_SHAPE,
    SHAPE_NOTE,
    Detection,
    Match,
    Miss,
    named_chain,
    shuffle_scale,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "W. Shi et al., Real-Time Single Image and Video Super-Resolution Using an Efficient "
    "Sub-Pixel Convolutional Neural Network, CVPR 2016"
)
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class ESPCN(SRModel):
    """Three LR-space convolutions and a sub-pixel (pixel shuffle) output layer."""

    arch_id = "espcn"

    def __init__(
        self,
        scale: int = 3,
        kernels: Sequence[int] = (5, 3, 3),
        features: Sequence[int] = (64, 32),
        activation: str = "tanh",
        y_channel: bool = False,
        color_space: str = "rgb",
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        k = [int(v) for v in kernels]
        f = [int(v) for v in features]
        if len(k) != 3 or len(f) != 2 or any(v < 1 or v % 2 == 0 for v in k) or min(f) < 1:
            raise ConfigError(
                f"espcn: kernels must be 3 odd sizes and features 2 widths, got {k} and {f}"
            )
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"espcn: unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}"
            )
        self.scale = scale
        self.y_channel = bool(y_channel)
        self.kernels = k
        self.hparams = {
            "scale": scale,
            "kernels": k,
            "features": f,
            "activation": activation,
            "y_channel": self.y_channel,
            "color_space": check_color_space(self.arch_id, color_space, self.y_channel),
        }
        ch = 1 if self.y_channel else 3
        act = _ACTIVATIONS[activation]
        self.body = nn.Sequential(
            nn.Conv2d(ch, f[0], k[0], padding=k[0] // 2),
            act(),
            nn.Conv2d(f[0], f[1], k[1], padding=k[1] // 2),
            act(),
            nn.Conv2d(f[1], ch * scale * scale, k[2], padding=k[2] // 2),
            nn.PixelShuffle(scale),
        )

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        if self.hparams["color_space"] == "ycbcr":
            return ycbcr_sr(x, self._sr)
        return self._sr(x)

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        span = through_conv(span, sum(v // 2 for v in self.kernels))
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=radius(span),
            paper=PAPER,
        )


def espcn(*, scale: int, **overrides: Any) -> ESPCN:
    """Preset ``espcn``: 5-3-3 with 64 and 32 channels, tanh."""
    kw: dict[str, Any] = {"kernels": (5, 3, 3), "features": (64, 32), "activation": "tanh"}
    kw.update(overrides)
    return ESPCN(scale=scale, **kw)


# Key names of the three convs in the checkpoints people publish.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "native": ("body.0", "body.2", "body.4"),
    "conv_n": ("conv_1", "conv_2", "conv_3"),  # Nhat-Thanh/ESPCN-Pytorch
    "conv123": ("conv1", "conv2", "conv3"),  # leftthomas/ESPCN and others
    "yjn870": ("first_part.0", "first_part.2", "last_part.0"),  # yjn870/ESPCN-pytorch
}


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """Three convs, the last with ``channels * s^2`` outputs (s >= 2): ESPCN at scale s."""
    found = named_chain(sd, LAYOUTS, ESPCN.arch_id)
    if found is None or isinstance(found, Miss):
        return found
    layout, names, convs = found
    (w1, _), (w2, _), (w3, _) = convs
    ch = int(w1.shape[1])
    scale = shuffle_scale(int(w3.shape[0]), ch)
    if scale is None or scale < 2:
        if w3.shape[0] == ch:
            return None  # same channels in and out: SRCNN's shape
        return Miss(ESPCN.arch_id, layout, f"last conv has {w3.shape[0]} outputs, not {ch}*s^2")
    if ch not in (1, 3):
        return Miss(ESPCN.arch_id, layout, f"{ch} input channels (expected 1 for Y or 3 for RGB)")
    renamed = {
        f"body.{2 * i}.{p}": sd[f"{name}.{p}"]
        for i, name in enumerate(names)
        for p in ("weight", "bias")
    }
    return Match(
        ESPCN.arch_id,
        {
            "kernels": [int(w.shape[-1]) for w in (w1, w2, w3)],
            "features": [int(w1.shape[0]), int(w2.shape[0])],
            "activation": "tanh",
            "y_channel": ch == 1,
            "color_space": "ycbcr" if layout == "conv_n" and ch == 3 else "rgb",
        },
        renamed,
        layout,
        scale=scale,
        notes=(
            "activation assumed tanh (the paper's; not readable from the tensors)",
            *((YCBCR_NOTE,) if layout == "conv_n" and ch == 3 else ()),
            *((SHAPE_NOTE,) if layout == BY_SHAPE else ()),
        ),
    )


__all__ = ["ESPCN", "LAYOUTS", "detect", "espcn"]
