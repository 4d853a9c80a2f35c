"""SRVGGNetCompact ("Real-ESRGAN Compact"): Wang, Xie, Dong, Shan, "Real-ESRGAN: Training
Real-World Blind Super-Resolution with Pure Synthetic Data", ICCV Workshops 2021
(``realesr-general-x4v3``, ``realesr-animevideov3``, and 85 community models on
OpenModelDB).

A plain VGG-style stack on the LR image: conv3x3 3 -> F, activation, ``num_conv`` times
(conv3x3 F -> F, activation), conv3x3 F -> 3*s^2, pixel shuffle, plus the nearest-neighbour
upsampled input (so the network learns a residual). Activation PReLU with one slope per
channel (the released models), ReLU or LeakyReLU(0.1). Parameter names are Real-ESRGAN's
(``body.{i}``: convs at even indices, activations at odd ones), so its ``params``
state dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import positive_int
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
)
from sisr.archs._detect import Detection, Match, Miss, few, indices, shuffle_scale
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "X. Wang, L. Xie, C. Dong, Y. Shan, Real-ESRGAN: Training Real-World Blind "
    "Super-Resolution with Pure Synthetic Data, ICCV Workshops 2021 (SRVGGNetCompact)"
)
# x1 last, so that probes that take the first scale pick a super-resolution one.
SCALES: tuple[int, ...] = (*STANDARD_SCALES, 1)
ACTIVATIONS: tuple[str, ...] = ("prelu", "relu", "leakyrelu")


def _act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class SRVGGNetCompact(SRModel):
    """Real-ESRGAN Compact: ``num_conv + 2`` convs on the LR grid, pixel shuffle, + nearest."""

    arch_id = "compact"

    def __init__(
        self, scale: int = 4, num_feat: int = 64, num_conv: int = 16, act_type: str = "prelu"
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "num_feat", num_feat)
        positive_int(self.arch_id, "num_conv", num_conv, minimum=0)
        if act_type not in ACTIVATIONS:
            raise ConfigError(f"compact: act_type must be one of {ACTIVATIONS}, got {act_type!r}")
        self.scale = scale
        self.num_conv = num_conv
        self.hparams = {
            "scale": scale,
            "num_feat": num_feat,
            "num_conv": num_conv,
            "act_type": act_type,
        }
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, padding=1), _act(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), _act(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        out = F.pixel_shuffle(self.body(x), self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        span = through_conv(span, self.num_conv + 2)  # the nearest skip adds nothing
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            # Real-ESRGAN runs these models in fp16 by default.
            half_safe=True,
            paper=PAPER,
        )


def compact(*, scale: int, **overrides: Any) -> SRVGGNetCompact:
    """Preset ``compact``: 64 features, 16 convs, PReLU (realesr-general-x4v3's size)."""
    kw: dict[str, Any] = {"num_feat": 64, "num_conv": 16, "act_type": "prelu"}
    kw.update(overrides)
    return SRVGGNetCompact(scale=scale, **kw)


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """``body.{even}`` 3x3 convs with per-channel PReLU slopes at ``body.{odd}``, nothing else.

    ReLU / LeakyReLU variants store no activation tensors, so nothing in the file tells
    them apart from each other (or from other plain conv stacks); they are not detected:
    build ``compact`` with ``act_type`` and convert them with ``sisr convert --arch``.
    """
    if not sd or not all(k.startswith("body.") for k in sd) or "body.0.weight" not in sd:
        return None
    idx = indices(sd, r"body\.(\d+)\.")
    last = idx[-1]
    has_prelu = "body.1.weight" in sd
    if not has_prelu:
        return None  # not distinguishable from other conv stacks (SRCNN/ESPCN/VDSR names)
    if last % 2 or idx != list(range(last + 1)):
        return Miss(SRVGGNetCompact.arch_id, "realesrgan", "body indices are not 0..2n+2")
    f = int(sd["body.0.weight"].shape[0])
    for i in idx:
        w = sd.get(f"body.{i}.weight")
        if w is None:
            return Miss(SRVGGNetCompact.arch_id, "realesrgan", f"body.{i}.weight is missing")
        if i % 2 == 0 and (w.dim() != 4 or tuple(w.shape[-2:]) != (3, 3)):
            return Miss(SRVGGNetCompact.arch_id, "realesrgan", f"body.{i} is not a 3x3 conv")
        if i % 2 and tuple(w.shape) != (f,):
            return Miss(SRVGGNetCompact.arch_id, "realesrgan", f"body.{i} is not a PReLU({f})")
    extra = [k for k in sd if not k.endswith((".weight", ".bias"))]
    if extra:
        return Miss(SRVGGNetCompact.arch_id, "realesrgan", f"unexpected tensors {few(extra)}")
    if sd["body.0.weight"].shape[1] != 3:
        return Miss(SRVGGNetCompact.arch_id, "realesrgan", "sisr runs RGB models only")
    scale = shuffle_scale(int(sd[f"body.{last}.weight"].shape[0]), 3)
    if scale is None or scale not in SCALES:
        return Miss(SRVGGNetCompact.arch_id, "realesrgan", "the last conv fits no scale")
    return Match(
        SRVGGNetCompact.arch_id,
        {"num_feat": f, "num_conv": (last - 2) // 2, "act_type": "prelu"},
        dict(sd),
        "realesrgan",
        scale,
    )


__all__ = ["SRVGGNetCompact", "compact", "detect"]
