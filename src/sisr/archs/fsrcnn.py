"""FSRCNN: Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural
Network", ECCV 2016.

On the LR image: feature extraction conv 5x5 -> d, shrinking conv 1x1 -> s, m mapping
convs 3x3 -> s, expanding conv 1x1 -> d (each followed by PReLU), then a 9x9 transposed
convolution with stride = scale to the output channels. Presets: ``fsrcnn`` = FSRCNN(56, 12, 4),
``fsrcnn-s`` = FSRCNN-s(32, 5, 1). Paper notation d, s, m is ``features``, ``shrink``,
``maps`` here. The paper worked on Y only: ``y_channel=True`` reproduces that.

Deconvolution geometry: ``ConvTranspose2d(k=9, stride=s, padding=p, output_padding=op)``
gives ``(H - 1) s - 2p + 9 + op`` rows. ``deconv_geometry="centered"`` (the default):
``p = ceil((9 - s) / 2)``, ``op = 2p - (9 - s)`` makes that exactly ``sH`` and centres the
kernel on the LR pixel (exactly for odd s, half an HR pixel off for even s, the best any
integer padding can do). ``"reference"``: ``p = 4``, ``op = s - 1``, the geometry of the
most used PyTorch FSRCNN (yjn870/FSRCNN-pytorch) and its forks; also exactly ``sH``, equal to
"centered" at x2, shifted by one HR pixel at x3 / x4. Weights trained one way must run that
way, so the geometry is a hyper-parameter stored in the weights file.

``maps_activation="last"`` is the variant with one PReLU after the whole mapping stack
instead of one per mapping conv (Nhat-Thanh/FSRCNN-Pytorch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from sisr.archs._color import YCBCR_NOTE, check_color_space, luma_sr, ycbcr_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_deconv,
)
from sisr.archs._detect import Detection, Match, Miss, indices
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "C. Dong, C. C. Loy, X. Tang, Accelerating the Super-Resolution Convolutional Neural "
    "Network, ECCV 2016"
)
DECONV_KERNEL = 9


GEOMETRIES: tuple[str, ...] = ("centered", "reference")
MAPS_ACTIVATIONS: tuple[str, ...] = ("each", "last")


def deconv_geometry(
    scale: int, kernel: int = DECONV_KERNEL, geometry: str = "centered"
) -> tuple[int, int]:
    """(padding, output_padding) so a stride-``scale`` transposed conv outputs exactly s x input.

    ``centered``: padding ceil((k - s) / 2); ``reference``: padding k // 2 and output
    padding s - 1 (yjn870/FSRCNN-pytorch). Both give ``(H - 1) s - 2p + k + op = sH``.
    """
    if kernel < scale:
        raise ConfigError(f"fsrcnn: deconv kernel {kernel} is smaller than the scale {scale}")
    if geometry == "reference":
        return kernel // 2, scale - 1
    if geometry != "centered":
        raise ConfigError(f"fsrcnn: deconv_geometry must be one of {GEOMETRIES}, got {geometry!r}")
    padding = (kernel - scale + 1) // 2
    return padding, 2 * padding - (kernel - scale)


_geometry = deconv_geometry  # the constructor's argument of the same name shadows it


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
        color_space: str = "rgb",
        deconv_geometry: str = "centered",
        maps_activation: str = "each",
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        if features < 1 or shrink < 1 or maps < 0:
            raise ConfigError(
                f"fsrcnn: need features, shrink >= 1 and maps >= 0, got {features}, {shrink}, "
                f"{maps}"
            )
        if maps_activation not in MAPS_ACTIVATIONS:
            raise ConfigError(
                f"fsrcnn: maps_activation must be one of {MAPS_ACTIVATIONS}, got {maps_activation!r}"
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
            "color_space": check_color_space(self.arch_id, color_space, self.y_channel),
            "deconv_geometry": deconv_geometry,
            "maps_activation": maps_activation,
        }
        ch = 1 if self.y_channel else 3
        layers: list[nn.Module] = [
            nn.Conv2d(ch, features, 5, padding=2),
            nn.PReLU(features),
            nn.Conv2d(features, shrink, 1),
            nn.PReLU(shrink),
        ]
        for _ in range(maps):
            layers.append(nn.Conv2d(shrink, shrink, 3, padding=1))
            if maps_activation == "each":
                layers.append(nn.PReLU(shrink))
        if maps and maps_activation == "last":
            layers.append(nn.PReLU(shrink))
        layers += [nn.Conv2d(shrink, features, 1), nn.PReLU(features)]
        self.body = nn.Sequential(*layers)
        self.padding, self.output_padding = _geometry(scale, DECONV_KERNEL, deconv_geometry)
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
        if self.hparams["color_space"] == "ycbcr":
            return ycbcr_sr(x, self._sr)
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


def _ordered_modules(sd: Mapping[str, Tensor]) -> tuple[str, list[str], str] | None:
    """(layout, module prefixes in forward order, deconv prefix) for the known key namings."""
    if "deconv.weight" in sd and "body.0.weight" in sd:
        return "native", [f"body.{i}" for i in indices(sd, r"body\.(\d+)\.")], "deconv"
    if "last_part.weight" in sd and "first_part.0.weight" in sd:  # yjn870/FSRCNN-pytorch
        first = [f"first_part.{i}" for i in indices(sd, r"first_part\.(\d+)\.")]
        mid = [f"mid_part.{i}" for i in indices(sd, r"mid_part\.(\d+)\.")]
        return "yjn870", first + mid, "last_part"
    if "feature_extract.weight" in sd and "deconv.weight" in sd:  # Nhat-Thanh/FSRCNN-Pytorch
        maps = [f"map_{i}" for i in indices(sd, r"map_(\d+)\.")]
        order = ["feature_extract", "activation_1", "shrink", "activation_2", *maps]
        order += ["activation_3"] if maps else []
        order += ["expand", "activation_4" if maps else "activation_3"]
        return "nhatthanh", order, "deconv"
    return None


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """conv5 PReLU conv1 PReLU (conv3 [PReLU])*m conv1 PReLU + 9x9 deconv; scale not fixed.

    The stride of the deconv (the scale) is not in the tensors. Foreign layouts use the
    reference deconv geometry (see the module docstring).
    """
    found = _ordered_modules(sd)
    if found is None:
        return None
    layout, order, deconv = found
    kinds: list[str] = []
    renamed: dict[str, Tensor] = {}
    for i, name in enumerate(order):
        w = sd.get(f"{name}.weight")
        if w is None:
            return Miss(FSRCNN.arch_id, layout, f"{name}.weight is missing")
        kinds.append("conv" if w.dim() == 4 else "prelu")
        for p in ("weight", "bias"):
            if f"{name}.{p}" in sd:
                renamed[f"body.{i}.{p}"] = sd[f"{name}.{p}"]
    dw, db = sd.get(f"{deconv}.weight"), sd.get(f"{deconv}.bias")
    if dw is None or db is None or dw.dim() != 4:
        return Miss(FSRCNN.arch_id, layout, f"{deconv} is not a transposed conv with bias")
    renamed["deconv.weight"], renamed["deconv.bias"] = dw, db
    text = "".join("c" if k == "conv" else "p" for k in kinds)
    maps_activation = "each"
    if text.startswith("cpcp") and text.endswith("cp"):
        middle = text[4:-2]
        if set(middle) <= {"c", "p"} and middle == "cp" * (len(middle) // 2):
            maps = len(middle) // 2
        elif middle.endswith("p") and set(middle[:-1]) == {"c"}:
            maps, maps_activation = len(middle) - 1, "last"
        else:
            return Miss(FSRCNN.arch_id, layout, f"layer order {text} is not FSRCNN's")
    else:
        return Miss(FSRCNN.arch_id, layout, f"layer order {text} is not FSRCNN's")
    first = sd[f"{order[0]}.weight"]
    ch = int(first.shape[1])
    if ch not in (1, 3) or tuple(dw.shape[1:]) != (ch, DECONV_KERNEL, DECONV_KERNEL):
        return Miss(FSRCNN.arch_id, layout, f"deconv {tuple(dw.shape)} does not fit {ch} channels")
    return Match(
        FSRCNN.arch_id,
        {
            "features": int(first.shape[0]),
            "shrink": int(sd[f"{order[2]}.weight"].shape[0]),
            "maps": maps,
            "y_channel": ch == 1,
            "color_space": "ycbcr" if layout == "nhatthanh" and ch == 3 else "rgb",
            "deconv_geometry": "centered" if layout == "native" else "reference",
            "maps_activation": maps_activation,
        },
        renamed,
        layout,
        scale=None,
        notes=(YCBCR_NOTE,) if layout == "nhatthanh" and ch == 3 else (),
    )


__all__ = ["FSRCNN", "GEOMETRIES", "deconv_geometry", "detect", "fsrcnn", "fsrcnn_s"]
