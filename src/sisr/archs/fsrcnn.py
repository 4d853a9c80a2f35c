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
instead of one per mapping conv (Nhat-Thanh/FSRCNN-Pytorch). ``kernels`` are the sizes of
the feature extraction, mapping and deconvolution kernels (5, 3, 9 in the paper; the 1x1
shrinking and expanding convs are the structure itself). ``padding="valid"`` runs unpadded
convs on the input extended at its edges (as :mod:`sisr.archs.srcnn`); the deconvolution
is the same either way.
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
    through_deconv,
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
    indices,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.archs.srcnn import check_padding, conv_padding, pad_for_valid, plain_hparams
from sisr.errors import ConfigError

PAPER = (
    "C. Dong, C. C. Loy, X. Tang, Accelerating the Super-Resolution Convolutional Neural "
    "Network, ECCV 2016"
)
DECONV_KERNEL = 9
KERNELS: tuple[int, int, int] = (5, 3, DECONV_KERNEL)  # feature extraction, mapping, deconv


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
        kernels: Sequence[int] = KERNELS,
        padding: str = "same",
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        k = [int(v) for v in kernels]
        if len(k) != 3 or any(v < 1 or v % 2 == 0 for v in k):
            raise ConfigError(f"fsrcnn: kernels must be 3 odd sizes, got {k}")
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
        self.kernels = k
        self.padding = check_padding(self.arch_id, padding)
        # Only recorded when not the default, so the weights of before stay as they were.
        if k != list(KERNELS):
            self.hparams["kernels"] = k
        if self.padding != "same":
            self.hparams["padding"] = self.padding
        ch = 1 if self.y_channel else 3
        layers: list[nn.Module] = [
            nn.Conv2d(ch, features, k[0], padding=conv_padding(k[0], self.padding)),
            nn.PReLU(features),
            nn.Conv2d(features, shrink, 1),
            nn.PReLU(shrink),
        ]
        for _ in range(maps):
            layers.append(nn.Conv2d(shrink, shrink, k[1], padding=conv_padding(k[1], self.padding)))
            if maps_activation == "each":
                layers.append(nn.PReLU(shrink))
        if maps and maps_activation == "last":
            layers.append(nn.PReLU(shrink))
        layers += [nn.Conv2d(shrink, features, 1), nn.PReLU(features)]
        self.body = nn.Sequential(*layers)
        self.deconv_padding, self.output_padding = _geometry(scale, k[2], deconv_geometry)
        self.deconv = nn.ConvTranspose2d(
            features,
            ch,
            k[2],
            stride=scale,
            padding=self.deconv_padding,
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

    def _conv_radius(self) -> int:
        """Total radius of the LR convs (the 1x1s add none)."""
        return self.kernels[0] // 2 + self.maps * (self.kernels[1] // 2)

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB / YCbCr)."""
        if self.padding == "valid":
            x = pad_for_valid(x, self._conv_radius())
        return self.deconv(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        if self.hparams["color_space"] == "ycbcr":
            return ycbcr_sr(x, self._sr)
        return self._sr(x)

    def info(self) -> ArchInfo:
        span = through_deconv(
            output_block(self.scale), self.kernels[2], self.scale, self.deconv_padding
        )
        span = through_conv(span, self._conv_radius())
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


def _candidates(sd: Mapping[str, Tensor]) -> list[tuple[str, list[Layer], Layer]] | Miss:
    """(layout, layers before the deconv, deconv) to try: the known namings, else the
    file's own layers by their shapes (at least conv PReLU conv PReLU conv PReLU deconv)."""
    found = _ordered_modules(sd)
    if found is None:
        return [
            (BY_SHAPE, layers[:-1], layers[-1])
            for _, layers in chain_candidates(sd, {})
            if len(layers) >= 7
        ]
    layout, order, deconv = found
    layers: list[Layer] = []
    for name in order:
        w = sd.get(f"{name}.weight")
        if w is None:
            return Miss(FSRCNN.arch_id, layout, f"{name}.weight is missing")
        layers.append(Layer(name, w, sd.get(f"{name}.bias")))
    dw = sd.get(f"{deconv}.weight")
    if dw is None:
        return Miss(FSRCNN.arch_id, layout, f"{deconv}.weight is missing")
    used = {f"{n}.{p}" for n in [*order, deconv] for p in ("weight", "bias")}
    if extra := sorted(set(sd) - used):
        return Miss(FSRCNN.arch_id, layout, f"unexpected tensors {', '.join(extra[:4])}")
    return [(layout, layers, Layer(deconv, dw, sd.get(f"{deconv}.bias")))]


def _fit(layers: list[Layer], deconv: Layer) -> dict[str, Any] | str:
    """FSRCNN's hparams from its layers, or why they are not FSRCNN's."""
    text = "".join({"conv": "c", "prelu": "p"}.get(a.kind, "?") for a in layers)
    order = f"layer order {text} + deconv is not FSRCNN's"
    if len(text) < 6 or not (text.startswith("cpcp") and text.endswith("cp")):
        return order
    middle = text[4:-2]
    if middle == "cp" * (len(middle) // 2):
        maps, maps_activation = len(middle) // 2, "each"
    elif middle.endswith("p") and set(middle[:-1]) == {"c"}:
        maps, maps_activation = len(middle) - 1, "last"
    else:
        return order
    if problem := chain_problem(layers):
        return problem
    convs = [a for a in layers if a.kind == "conv"]
    if any(a.bias is None for a in [*convs, deconv]):
        return "a conv or the deconv has no bias"
    first, shrink, expand = convs[0].weight, convs[1].weight, convs[-1].weight
    ch, d, s = int(first.shape[1]), int(first.shape[0]), int(shrink.shape[0])
    if any(a.kind == "prelu" and a.weight.shape[0] == 1 and d > 1 for a in layers):
        return "PReLUs with one shared slope (FSRCNN has one per channel)"
    if shrink.shape[-1] != 1 or expand.shape[-1] != 1 or int(expand.shape[0]) != d:
        return f"shrink {tuple(shrink.shape)} / expand {tuple(expand.shape)} are not 1x1 {d}<->{s}"
    map_kernels = {a.kernel for a in convs[2:-1]}
    k_map = map_kernels.pop() if len(map_kernels) == 1 else KERNELS[1]
    kernels = [convs[0].kernel, k_map, deconv.kernel]
    if map_kernels or any(k is None or k % 2 == 0 for k in kernels):
        return f"kernels {kernels} (feature, mapping, deconv) are not square and odd"
    dw = deconv.weight
    if ch not in (1, 3) or dw.dim() != 4 or tuple(dw.shape[:2]) != (d, ch):
        return f"deconv {tuple(dw.shape)} does not map {d} features to {ch} channels"
    hp: dict[str, Any] = {"features": d, "shrink": s, "maps": maps}
    hp["maps_activation"] = maps_activation
    if kernels != list(KERNELS):
        hp["kernels"] = kernels
    hp["ch"] = ch
    return hp


_YCBCR_LAYOUTS = {"nhatthanh": "Nhat-Thanh's code feeds full-range YCbCr"}


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """conv PReLU conv1x1 PReLU (conv [PReLU])*m conv1x1 PReLU + deconv; scale not fixed.

    Widths, the number of mapping convs, the activation layout, the kernel sizes and the
    channels come from the shapes, under any key names. The stride of the deconv (the scale)
    is not in the tensors. Foreign layouts use the reference deconv geometry (see the module
    docstring).
    """
    candidates = _candidates(sd)
    if isinstance(candidates, Miss):
        return candidates
    for layout, layers, deconv in candidates:
        fit = _fit(layers, deconv)
        if isinstance(fit, str):
            if layout == BY_SHAPE:
                continue
            return Miss(FSRCNN.arch_id, layout, fit)
        ch = fit.pop("ch")
        hp, notes = plain_hparams(layout, ch, valid={}, ycbcr=_YCBCR_LAYOUTS)
        renamed = body_state(layers, step=1)
        renamed["deconv.weight"] = deconv.weight
        if deconv.bias is not None:  # always, after _fit
            renamed["deconv.bias"] = deconv.bias
        fit["deconv_geometry"] = "centered" if layout == "native" else "reference"
        return Match(FSRCNN.arch_id, {**fit, **hp}, renamed, layout, scale=None, notes=notes)
    return None


__all__ = ["FSRCNN", "GEOMETRIES", "KERNELS", "deconv_geometry", "detect", "fsrcnn", "fsrcnn_s"]
