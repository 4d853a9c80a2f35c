"""SRCNN: Dong, Loy, He, Tang, "Image Super-Resolution Using Deep Convolutional Networks",
ECCV 2014 / TPAMI 2016.

Three convolutions (patch extraction f1 x f1 -> n1, non-linear mapping f2 x f2 -> n2,
reconstruction f3 x f3 -> channels) with ReLU after the first two, applied to the
bicubic-upsampled image. The paper's convolutions are *valid* (the output is smaller by
f1 + f2 + f3 - 3 pixels and the loss sees the centre only). ``padding="same"`` (the default)
zero-pads every conv to keep the size; ``padding="valid"`` runs the unpadded convs of networks
trained that way on the input extended at its edges by the stack's radius (edge pixels
repeated, see :func:`pad_for_valid`), so the output keeps the input's size and its interior is exactly the
valid network's output. Either way the model maps (N, 3, H, W) -> (N, 3, sH, sW) like every
zoo model. Presets: ``srcnn`` = 9-5-5 (64, 32 filters, the TPAMI paper's best),
``srcnn-915`` = 9-1-5 (the ECCV base model). The paper worked on Y only: ``y_channel=True``
reproduces that.

The same ``padding`` knob, helpers and plain-chain detection serve the other plain
convolution chains (FSRCNN, ESPCN, VDSR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._color import check_color_space, luma_sr, ycbcr_sr
from sisr.archs._common import (
    STANDARD_SCALES,
    bicubic_upsample,
    check_scale,
    pre_upsampling_radius,
)
from sisr.archs._detect import (
    BY_SHAPE,
    PADDINGS,
    SHAPE_NOTE,
    Detection,
    Layer,
    Match,
    Miss,
    body_state,
    chain_candidates,
    chain_problem,
    color_note,
    padding_note,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "C. Dong, C. C. Loy, K. He, X. Tang, Image Super-Resolution Using Deep Convolutional "
    "Networks, ECCV 2014 / IEEE TPAMI 2016"
)


def check_padding(arch_id: str, padding: str) -> str:
    """Validate the ``padding`` hparam of the plain chains (``same`` or ``valid``)."""
    if padding not in PADDINGS:
        raise ConfigError(f"{arch_id}: padding must be one of {PADDINGS}, got {padding!r}")
    return padding


def pad_for_valid(x: Tensor, radius: int) -> Tensor:
    """Extend an image by ``radius`` pixels on each side for a stack of unpadded convs.

    (N, C, H, W) -> (N, C, H + 2r, W + 2r), the edge pixels repeated: the convs then see
    image-like values at the border instead of zeros, and any image size works. (Measured on
    Nhat-Thanh's valid-conv SRCNN files, Set5 x2 Y-PSNR: repeated edges 34.258 / 33.902 dB
    for 9-1-5 / 9-5-5, reflection 34.257 / 33.899, zero-padded convs 34.019 / 33.271.)
    """
    if radius <= 0:
        return x
    return F.pad(x, (radius, radius, radius, radius), mode="replicate")


def conv_padding(kernel: int, padding: str) -> int:
    """The zero padding of a stride-1 conv with an odd ``kernel`` under ``padding``."""
    return kernel // 2 if padding == "same" else 0


class SRCNN(SRModel):
    """SRCNN on a bicubic-upsampled input; zero-padded or valid convolutions."""

    arch_id = "srcnn"

    def __init__(
        self,
        scale: int = 3,
        kernels: Sequence[int] = (9, 5, 5),
        features: Sequence[int] = (64, 32),
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
                f"srcnn: kernels must be 3 odd sizes and features 2 widths, got {k} and {f}"
            )
        self.scale = scale
        self.y_channel = bool(y_channel)
        self.kernels = k
        self.padding = check_padding(self.arch_id, padding)
        self.hparams = {
            "scale": scale,
            "kernels": k,
            "features": f,
            "y_channel": self.y_channel,
            "color_space": check_color_space(self.arch_id, color_space, self.y_channel),
        }
        if self.padding != "same":  # only recorded when not the default
            self.hparams["padding"] = self.padding
        ch = 1 if self.y_channel else 3
        pad = [conv_padding(v, self.padding) for v in k]
        self.body = nn.Sequential(
            nn.Conv2d(ch, f[0], k[0], padding=pad[0]),
            nn.ReLU(inplace=True),
            nn.Conv2d(f[0], f[1], k[1], padding=pad[1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(f[1], ch, k[2], padding=pad[2]),
        )

    def _sr(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW), C = 1 (Y) or 3 (RGB / YCbCr)."""
        up = bicubic_upsample(x, self.scale)
        if self.padding == "valid":
            up = pad_for_valid(up, sum(v // 2 for v in self.kernels))
        return self.body(up)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB -> (N, 3, sH, sW) RGB."""
        if self.y_channel:
            return luma_sr(x, self.scale, self._sr)
        if self.hparams["color_space"] == "ycbcr":
            return ycbcr_sr(x, self._sr)
        return self._sr(x)

    def info(self) -> ArchInfo:
        # Valid convs on the edge-extended input see the same window as padded ones.
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


# Key names of the three convs in the checkpoints people publish; any other names are
# recognised by the shapes (layout "by-shape").
LAYOUTS: dict[str, tuple[str, ...]] = {
    "native": ("body.0", "body.2", "body.4"),
    "conv123": ("conv1", "conv2", "conv3"),  # yjn870/SRCNN-pytorch and its many forks
    "nhatthanh": ("patch_extraction", "nonlinear_map", "recon"),  # Nhat-Thanh/SRCNN-Pytorch
}
# What the layouts' own code did with the facts the tensors do not hold (a by-shape file
# gets the defaults and a note saying which flag overrides them).
_VALID_LAYOUTS = {"nhatthanh": "Nhat-Thanh's code uses unpadded convs"}
_YCBCR_LAYOUTS = {"nhatthanh": "Nhat-Thanh's code feeds full-range YCbCr"}


def plain_hparams(
    layout: str, ch: int, *, valid: Mapping[str, str], ycbcr: Mapping[str, str]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The hparams (``y_channel``, ``color_space``, ``padding``) and notes a plain chain's
    detector sets for what the tensors do not hold: the layout's own code when it is known
    (``valid`` / ``ycbcr``: layout -> why), else the defaults, each with the flag that
    overrides it."""
    hp: dict[str, Any] = {
        "y_channel": ch == 1,
        "color_space": "ycbcr" if ch == 3 and layout in ycbcr else "rgb",
        "padding": "valid" if layout in valid else "same",
    }
    notes: list[str] = [SHAPE_NOTE] if layout == BY_SHAPE else []
    why = valid.get(layout, f"the {layout} layout's code zero-pads")
    if layout == BY_SHAPE:
        why = "the default; a file does not record it"
    notes.append(padding_note(hp["padding"], why))
    if ch == 3:
        seen = ycbcr.get(layout, "the default for a 3-channel network")
        notes.append(color_note(hp["color_space"], seen))
    return hp, tuple(notes)


def _fit(layers: list[Layer]) -> dict[str, Any] | str:
    """SRCNN's hparams from three conv layers, or why they are not SRCNN's."""
    if len(layers) != 3 or any(a.kind != "conv" or a.bias is None for a in layers):
        return "not three convs with biases"
    if problem := chain_problem(layers):
        return problem
    w1, w2, w3 = (a.weight for a in layers)
    ch = int(w1.shape[1])
    if w3.shape[0] != ch:
        return f"{int(w3.shape[0])} output channels for {ch} input channels"
    if ch not in (1, 3):
        return f"{ch} input channels (expected 1 for Y or 3 for RGB)"
    kernels = [a.kernel for a in layers]
    if any(k is None or k % 2 == 0 for k in kernels):
        return f"kernels {[tuple(a.weight.shape[-2:]) for a in layers]} are not square and odd"
    return {"kernels": kernels, "features": [int(w1.shape[0]), int(w2.shape[0])], "ch": ch}


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """Three convs whose output has the input's channels (1: Y, 3: RGB); scale not fixed.

    Kernels, widths and channels come from the shapes; the key names only tell which code
    wrote the file (and with it the padding and colour space that code used).
    """
    for layout, layers in chain_candidates(sd, LAYOUTS):
        fit = _fit(layers)
        if isinstance(fit, str):
            if layout == BY_SHAPE:
                continue
            if "output channels" in fit:
                return None  # more outputs than inputs: a sub-pixel network (ESPCN)
            return Miss(SRCNN.arch_id, layout, fit)
        if layout == "native" and fit["kernels"] == [3, 3, 3]:
            return None  # three 3x3 convs under sisr's names: a depth-3 VDSR, not SRCNN
        ch = fit.pop("ch")
        hp, notes = plain_hparams(layout, ch, valid=_VALID_LAYOUTS, ycbcr=_YCBCR_LAYOUTS)
        return Match(
            SRCNN.arch_id,
            {**fit, **hp},
            body_state(layers),
            layout,
            scale=None,  # it works on a bicubic-upsampled input: any scale
            notes=notes,
        )
    return None


__all__ = [
    "LAYOUTS",
    "SRCNN",
    "check_padding",
    "conv_padding",
    "detect",
    "pad_for_valid",
    "plain_hparams",
    "srcnn",
    "srcnn_915",
]
