"""ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016.

On the LR image: conv 5x5 -> 64, conv 3x3 -> 32 (tanh after each, as the paper chose tanh
over ReLU), conv 3x3 -> channels * s^2, then a pixel shuffle (the sub-pixel convolution).
Preset ``espcn`` is the paper's (f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3.
``activation="relu"`` is offered because later re-implementations found it trains faster.
The paper worked on Y only: ``y_channel=True`` reproduces that. ``padding="valid"``
runs unpadded convs on the input extended at its edges (as :mod:`sisr.archs.srcnn`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from sisr.archs._color import check_color_space, luma_sr, ycbcr_sr
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
    Detection,
    Layer,
    Match,
    Miss,
    body_state,
    chain_candidates,
    chain_problem,
    shuffle_scale,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.archs.srcnn import check_padding, conv_padding, pad_for_valid, plain_hparams
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
        padding: str = "same",
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
        self.padding = check_padding(self.arch_id, padding)
        if self.padding != "same":  # only recorded when not the default
            self.hparams["padding"] = self.padding
        ch = 1 if self.y_channel else 3
        act = _ACTIVATIONS[activation]
        pad = [conv_padding(v, self.padding) for v in k]
        self.body = nn.Sequential(
            nn.Conv2d(ch, f[0], k[0], padding=pad[0]),
            act(),
            nn.Conv2d(f[0], f[1], k[1], padding=pad[1]),
            act(),
            nn.Conv2d(f[1], ch * scale * scale, k[2], padding=pad[2]),
            nn.PixelShuffle(scale),
        )

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB / YCbCr)."""
        if self.padding == "valid":
            x = pad_for_valid(x, sum(v // 2 for v in self.kernels))
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


# Key names of the three convs in the checkpoints people publish; any other names are
# recognised by the shapes (layout "by-shape").
LAYOUTS: dict[str, tuple[str, ...]] = {
    "native": ("body.0", "body.2", "body.4"),
    "conv_n": ("conv_1", "conv_2", "conv_3"),  # Nhat-Thanh/ESPCN-Pytorch
    "conv123": ("conv1", "conv2", "conv3"),  # leftthomas/ESPCN and others
    "yjn870": ("first_part.0", "first_part.2", "last_part.0"),  # yjn870/ESPCN-pytorch
}
_YCBCR_LAYOUTS = {"conv_n": "Nhat-Thanh's code feeds full-range YCbCr"}
_ACTIVATION_NOTE = "activation assumed tanh (the paper's; not readable from the tensors)"


def _fit(layers: list[Layer]) -> dict[str, Any] | str:
    """ESPCN's hparams and scale from three conv layers, or why they are not ESPCN's."""
    if len(layers) != 3 or any(a.kind != "conv" or a.bias is None for a in layers):
        return "not three convs with biases"
    if problem := chain_problem(layers):
        return problem
    w1, w2, w3 = (a.weight for a in layers)
    ch = int(w1.shape[1])
    scale = shuffle_scale(int(w3.shape[0]), ch)
    if scale is None or scale < 2:
        return f"last conv has {int(w3.shape[0])} outputs, not {ch}*s^2"
    if ch not in (1, 3):
        return f"{ch} input channels (expected 1 for Y or 3 for RGB)"
    kernels = [a.kernel for a in layers]
    if any(k is None or k % 2 == 0 for k in kernels):
        return f"kernels {[tuple(a.weight.shape[-2:]) for a in layers]} are not square and odd"
    return {
        "kernels": kernels,
        "features": [int(w1.shape[0]), int(w2.shape[0])],
        "ch": ch,
        "scale": scale,
    }


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """Three convs, the last with ``channels * s^2`` outputs (s >= 2): ESPCN at scale s.

    Kernels, widths, channels and the scale come from the shapes, under any key names.
    """
    for layout, layers in chain_candidates(sd, LAYOUTS):
        fit = _fit(layers)
        if isinstance(fit, str):
            if layout == BY_SHAPE:
                continue
            if (
                fit.startswith("last conv")
                and layers[2].weight.shape[0] == layers[0].weight.shape[1]
            ):
                return None  # same channels in and out: SRCNN's shape
            return Miss(ESPCN.arch_id, layout, fit)
        ch, scale = fit.pop("ch"), fit.pop("scale")
        hp, notes = plain_hparams(layout, ch, valid={}, ycbcr=_YCBCR_LAYOUTS)
        return Match(
            ESPCN.arch_id,
            {**fit, "activation": "tanh", **hp},
            body_state(layers),
            layout,
            scale=scale,
            notes=(_ACTIVATION_NOTE, *notes),
        )
    return None


__all__ = ["ESPCN", "LAYOUTS", "detect", "espcn"]
