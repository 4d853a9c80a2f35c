"""VDSR: Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016.

Twenty 3x3 convolutions of 64 channels (ReLU after all but the last) on the
bicubic-upsampled image, predicting the residual that is added back to that upsample.
Zero padding keeps the size, as in the paper. He initialisation, as in the paper.
The paper worked on Y only: ``y_channel=True`` reproduces that (~0.67M parameters either way).
``bias=False`` is the bias-free form of the widely used twtygqyy/pytorch-vdsr code.
``padding="valid"`` runs unpadded convs on the upsample extended at its edges (as
:mod:`sisr.archs.srcnn`), for networks trained without padding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from sisr.archs._color import check_color_space, luma_sr, ycbcr_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    bicubic_upsample,
    check_scale,
    pre_upsampling_radius,
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
    few,
    indices,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.archs.srcnn import check_padding, conv_padding, pad_for_valid, plain_hparams
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
        padding: str = "same",
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
        self.padding = check_padding(self.arch_id, padding)
        if self.padding != "same":  # only recorded when not the default
            self.hparams["padding"] = self.padding
        ch = 1 if self.y_channel else 3
        b = bool(bias)
        p = conv_padding(3, self.padding)
        layers: list[nn.Module] = [
            nn.Conv2d(ch, features, 3, padding=p, bias=b),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=p, bias=b), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, ch, 3, padding=p, bias=b))
        self.body = nn.Sequential(*layers)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB)."""
        up = bicubic_upsample(x, self.scale)
        if self.padding == "valid":
            return up + self.body(pad_for_valid(up, self.depth))
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


def _named_layers(sd: Mapping[str, Tensor]) -> tuple[str, list[str]] | None:
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


# A chain recognised by shape alone must be at least this deep: three convs are SRCNN's.
_MIN_SHAPE_DEPTH = 4


def _fit(layers: list[Layer]) -> dict[str, Any] | str:
    """VDSR's hparams from its conv layers, or why they are not VDSR's."""
    if len(layers) < 2 or any(a.kind != "conv" for a in layers):
        return "not a stack of two or more convs"
    if len({a.bias is None for a in layers}) > 1:
        return "some convs have a bias and some do not"
    if problem := chain_problem(layers):
        return problem
    ch, feats = int(layers[0].weight.shape[1]), int(layers[0].weight.shape[0])
    if ch not in (1, 3) or layers[-1].weight.shape[0] != ch:
        return "the first and last convs do not map 1 or 3 channels"
    if any(a.kernel != 3 for a in layers):
        return "VDSR's convs are all 3x3"
    widths = {int(a.weight.shape[0]) for a in layers[:-1]}
    if widths != {feats}:
        return f"inner widths {sorted(widths)} differ (VDSR has one width)"
    return {"depth": len(layers), "features": feats, "ch": ch, "bias": layers[0].bias is not None}


_YCBCR_LAYOUTS = {"nhatthanh": "Nhat-Thanh's code feeds full-range YCbCr"}


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """A plain stack of 3x3 convs, channels 1 or 3 in and out, with or without biases.

    Depth, width, channels and biases come from the shapes; a file under other key names
    is recognised by them alone when it is at least four convs deep.
    """
    named = _named_layers(sd)
    candidates: list[tuple[str, list[Layer]]] = []
    if named is not None:
        layout, names = named
        bad = [n for n in names if f"{n}.weight" not in sd or sd[f"{n}.weight"].dim() != 4]
        if bad:
            return Miss(
                VDSR.arch_id, layout, f"{bad[0]}.weight is missing or not a 4-d conv kernel"
            )
        used = {f"{n}.{p}" for n in names for p in ("weight", "bias")}
        if extra := [k for k in sd if k not in used]:
            return Miss(VDSR.arch_id, layout, f"unexpected tensors {few(extra)}")
        candidates.append(
            (layout, [Layer(n, sd[f"{n}.weight"], sd.get(f"{n}.bias")) for n in names])
        )
    else:
        candidates = [c for c in chain_candidates(sd, {}) if len(c[1]) >= _MIN_SHAPE_DEPTH]
    for layout, layers in candidates:
        fit = _fit(layers)
        if isinstance(fit, str):
            if layout == BY_SHAPE:
                continue
            return Miss(VDSR.arch_id, layout, fit)
        ch = fit.pop("ch")
        hp, notes = plain_hparams(layout, ch, valid={}, ycbcr=_YCBCR_LAYOUTS)
        return Match(
            VDSR.arch_id,
            {**fit, **hp},
            body_state(layers),
            layout,
            scale=None,  # it works on a bicubic-upsampled input: any scale
            notes=notes,
        )
    return None


__all__ = ["VDSR", "detect", "vdsr"]
