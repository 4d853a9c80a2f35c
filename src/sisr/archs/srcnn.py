"""SRCNN: Dong, Loy, He, Tang, "Image Super-Resolution Using Deep Convolutional Networks",
ECCV 2014 / TPAMI 2016.

Three convolutions (patch extraction f1 x f1 -> n1, non-linear mapping f2 x f2 -> n2,
reconstruction f3 x f3 -> channels) with ReLU after the first two, applied to the
bicubic-upsampled image. The paper's convolutions are *valid* (the output is smaller by
f1 + f2 + f3 - 3 pixels and the loss sees the centre only); here every conv is zero-padded
to keep the size, so the model maps (N, 3, H, W) -> (N, 3, sH, sW) like every zoo model.
Presets: ``srcnn`` = 9-5-5 (64, 32 filters, the TPAMI paper's best), ``srcnn-915`` = 9-1-5
(the ECCV base model). The paper worked on Y only: ``y_channel=True`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from sisr.archs._color import YCBCR_NOTE, check_color_space, luma_sr, ycbcr_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    bicubic_upsample,
    check_scale,
    pre_upsampling_radius,
)
from sisr.archs._detect import BY_SHAPE, SHAPE_NOTE, Detection, Match, Miss, named_chain
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "C. Dong, C. C. Loy, K. He, X. Tang, Image Super-Resolution Using Deep Convolutional "
    "Networks, ECCV 2014 / IEEE TPAMI 2016"
)


class SRCNN(SRModel):
    """SRCNN on a bicubic-upsampled input, same-size (padded) convolutions."""

    arch_id = "srcnn"

    def __init__(
        self,
        scale: int = 3,
        kernels: Sequence[int] = (9, 5, 5),
        features: Sequence[int] = (64, 32),
        y_channel: bool = False,
        color_space: str = "rgb",
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        k = [int(v) for v in kernels]
        f = [int(v) for v in features]
        if len(k) != 3 or len(f) != 2 or any(v < 1 or v % 2 == 0 for v in k) or min(f) < 1:
            raise ConfigError(
                f"srcnn: kernels must be 3 odd sizes and features 2 widths, got {k} and {f}"
            )
        self.scale = scale
        self.y_channel = bool(y_channel)
        self.kernels = k
        self.hparams = {
            "scale": scale,
            "kernels": k,
            "features": f,
            "y_channel": self.y_channel,
            "color_space": check_color_space(self.arch_id, color_space, self.y_channel),
        }
        ch = 1 if self.y_channel else 3
        self.body = nn.Sequential(
            nn.Conv2d(ch, f[0], k[0], padding=k[0] // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(f[0], f[1], k[1], padding=k[1] // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(f[1], ch, k[2], padding=k[2] // 2),
        )

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB)."""
        return self.body(bicubic_upsample(x, self.scale))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        if self.hparams["color_space"] == "ycbcr":
            return ycbcr_sr(x, self._sr)
        return self._sr(x)

    def info(self) -> ArchInfo:
        hr_radius = sum(v // 2 for v in self.kernels)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=pre_upsampling_radius(self.scale, hr_radius),
            paper=PAPER,
        )


def srcnn(*, scale: int, **overrides: Any) -> SRCNN:
    """Preset ``srcnn``: 9-5-5, 64 and 32 filters (TPAMI 2016)."""
    kw: dict[str, Any] = {"kernels": (9, 5, 5), "features": (64, 32)}
    kw.update(overrides)
    return SRCNN(scale=scale, **kw)


def srcnn_915(*, scale: int, **overrides: Any) -> SRCNN:
    """Preset ``srcnn-915``: 9-1-5, 64 and 32 filters (ECCV 2014 base model)."""
    kw: dict[str, Any] = {"kernels": (9, 1, 5), "features": (64, 32)}
    kw.update(overrides)
    return SRCNN(scale=scale, **kw)


# Key names of the three convs in the checkpoints people publish.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "native": ("body.0", "body.2", "body.4"),
    "conv123": ("conv1", "conv2", "conv3"),  # yjn870/SRCNN-pytorch and its many forks
    "nhatthanh": ("patch_extraction", "nonlinear_map", "recon"),  # Nhat-Thanh/SRCNN-Pytorch
}


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """Three convs whose output has the input's channels (1: Y, 3: RGB); scale not fixed."""
    found = named_chain(sd, LAYOUTS, SRCNN.arch_id)
    if found is None or isinstance(found, Miss):
        return found
    layout, names, convs = found
    (w1, _), (w2, _), (w3, _) = convs
    ch = w1.shape[1]
    if w3.shape[0] != ch:
        return None  # more outputs than inputs: a sub-pixel network (ESPCN), not SRCNN
    if ch not in (1, 3):
        return Miss(SRCNN.arch_id, layout, f"{ch} input channels (expected 1 for Y or 3 for RGB)")
    kernels = [int(w.shape[-1]) for w in (w1, w2, w3)]
    if layout == "native" and kernels == [3, 3, 3]:
        return None  # three 3x3 convs under sisr's names: a depth-3 VDSR, not SRCNN
    if any(k % 2 == 0 or w.shape[-2] != k for k, w in zip(kernels, (w1, w2, w3), strict=True)):
        return Miss(SRCNN.arch_id, layout, f"kernels {kernels} are not square and odd")
    renamed = {
        f"body.{2 * i}.{p}": sd[f"{name}.{p}"]
        for i, name in enumerate(names)
        for p in ("weight", "bias")
    }
    notes: tuple[str, ...] = ()
    if layout == BY_SHAPE:
        notes = (SHAPE_NOTE,)
    if layout == "nhatthanh":
        notes = (
            "trained with unpadded convs; sisr zero-pads, so the outer pixels differ",
            YCBCR_NOTE,
        )
    return Match(
        SRCNN.arch_id,
        {
            "kernels": kernels,
            "features": [int(w1.shape[0]), int(w2.shape[0])],
            "y_channel": ch == 1,
            "color_space": "ycbcr" if layout == "nhatthanh" and ch == 3 else "rgb",
        },
        renamed,
        layout,
        scale=None,  # it works on a bicubic-upsampled input: any scale
        notes=notes,
    )


__all__ = ["LAYOUTS", "SRCNN", "detect", "srcnn", "srcnn_915"]
