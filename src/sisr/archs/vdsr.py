"""VDSR: Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016.

Twenty 3x3 convolutions of 64 channels (ReLU after all but the last) on the
bicubic-upsampled image, predicting the residual that is added back to that upsample.
Zero padding keeps the size, as in the paper. He initialisation, as in the paper.
The paper worked on Y only: ``y_channel=True`` reproduces that (~0.67M parameters either way).
``bias=False`` is the bias-free form of the widely used twtygqyy/pytorch-vdsr code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from sisr.archs._color import YCBCR_NOTE, check_color_space, luma_sr, ycbcr_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    bicubic_upsample,
    check_scale,
    pre_upsampling_radius,
)
from sisr.archs._detect import Detection, Match, Miss, conv_list, few, indices
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
        color_space: str = "rgb",
        bias: bool = True,
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
            "color_space": check_color_space(self.arch_id, color_space, self.y_channel),
            "bias": bool(bias),
        }
        ch = 1 if self.y_channel else 3
        b = bool(bias)
        layers: list[nn.Module] = [
            nn.Conv2d(ch, features, 3, padding=1, bias=b),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=b), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, ch, 3, padding=1, bias=b))
        self.body = nn.Sequential(*layers)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB)."""
        up = bicubic_upsample(x, self.scale)
        return up + self.body(up)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        if self.hparams["color_space"] == "ycbcr":
            return ycbcr_sr(x, self._sr)
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


def _conv_names(sd: Mapping[str, Tensor]) -> tuple[str, list[str]] | None:
    """(layout, conv prefixes in order) for the key namings people publish."""
    if "body.0.weight" in sd:
        return "native", [f"body.{i}" for i in indices(sd, r"body\.(\d+)\.")]
    if "input.weight" in sd and "output.weight" in sd:  # twtygqyy/pytorch-vdsr
        mid = [f"residual_layer.{i}.conv" for i in indices(sd, r"residual_layer\.(\d+)\.")]
        return "twtygqyy", ["input", *mid, "output"]
    if "conv_1.weight" in sd and any(k.startswith("conv_2_to_") for k in sd):  # Nhat-Thanh
        last = max(indices(sd, r"conv_(\d+)\.weight$"))
        mid = sorted(
            {k.rsplit(".", 1)[0] for k in sd if k.startswith("conv_2_to_")},
            key=lambda n: int(n.rsplit("_", 1)[1]),
        )
        return "nhatthanh", ["conv_1", *mid, f"conv_{last}"]
    return None


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """A plain stack of 3x3 convs, channels 1 or 3 in and out, with or without biases."""
    found = _conv_names(sd)
    if found is None:
        return None
    layout, names = found
    convs = conv_list(sd, names, bias=None)
    if isinstance(convs, str):
        return Miss(VDSR.arch_id, layout, convs)
    used = {f"{n}.{p}" for n in names for p in ("weight", "bias")}
    if extra := [k for k in sd if k not in used]:
        return Miss(VDSR.arch_id, layout, f"unexpected tensors {few(extra)}")
    ch, feats = int(convs[0][0].shape[1]), int(convs[0][0].shape[0])
    if ch not in (1, 3) or convs[-1][0].shape[0] != ch or len(convs) < 2:
        return Miss(VDSR.arch_id, layout, "the first and last convs do not map 1 or 3 channels")
    if any(w.shape[-1] != 3 or w.shape[-2] != 3 for w, _ in convs):
        return Miss(VDSR.arch_id, layout, "VDSR's convs are all 3x3")
    renamed: dict[str, Tensor] = {}
    for i, (w, b) in enumerate(convs):
        renamed[f"body.{2 * i}.weight"] = w
        if b is not None:
            renamed[f"body.{2 * i}.bias"] = b
    return Match(
        VDSR.arch_id,
        {
            "depth": len(convs),
            "features": feats,
            "y_channel": ch == 1,
            "color_space": "ycbcr" if layout == "nhatthanh" and ch == 3 else "rgb",
            "bias": convs[0][1] is not None,
        },
        renamed,
        layout,
        scale=None,  # it works on a bicubic-upsampled input: any scale
        notes=(YCBCR_NOTE,) if layout == "nhatthanh" and ch == 3 else (),
    )


__all__ = ["VDSR", "detect", "vdsr"]
