"""RFDN: Liu, Tang, Wu, "Residual Feature Distillation Network for Lightweight Image
Super-Resolution", ECCV 2020 Workshops (AIM) -- winner of the AIM 2020 efficient SR
challenge (arXiv:2009.11551; official code njulj/RFDN).

Structure (names as in the official code, so its checkpoint loads unchanged):

* ``fea_conv``: conv3x3 3 -> F;
* ``B1`` .. ``Bn`` (n = 4): residual feature distillation block (RFDB). Three steps, each
  a 1x1 *distillation* conv ``c{i}_d`` (-> D, kept aside) and a shallow residual block
  ``c{i}_r`` (conv3x3 F -> F plus its input), LeakyReLU(0.05) on both; then ``c4``
  (conv3x3 F -> D); the four D-channel maps are fused by the 1x1 ``c5`` (4D -> F) and
  gated by enhanced spatial attention ``esa``. (The official block has no residual over
  the whole block; the network is trained that way.)
* ``c.0``: 1x1 conv over the concatenated block outputs (nF -> F), LeakyReLU(0.05);
  ``LR_conv``: conv3x3 F -> F, plus ``fea_conv``'s output;
* ``upsampler.0``: conv3x3 F -> 3s^2, then pixel shuffle.

Enhanced spatial attention (ESA, E = F/4 channels): ``conv1`` 1x1 F -> E; ``conv2`` 3x3
stride 2 without padding; max pool 7x7 stride 3; ``conv_max``, ``conv3``, ``conv3_``
(3x3, ReLU after the first two); bilinear resize back to the input size; plus ``conv_f``
(1x1) of ``conv1``'s output; ``conv4`` 1x1 E -> F; sigmoid; multiplies the input.

Two consequences of ESA's strided, pooled branch, both inherited from the official code:

* It is not shift-invariant (stride 2, pool stride 3, and a resize whose ratio depends on
  the image size), so tiled output is close to, not equal to, the untiled one whatever
  the overlap. :data:`ESA_REACH` bounds how far it reads (checked for every size up to
  20,000 pixels), which makes :meth:`RFDN.info`'s radius a true bound on influence.
* It needs 15 pixels per side (3x3/2 conv, then a 7-wide pool). The official code fails
  below that; here a smaller map is edge-replicated to 15 pixels (bottom / right) before
  the strided conv, so the pooled branch sees one value (from the whole map) and every
  input size works. Inputs of 15 pixels and more are computed exactly as officially.

Input normalisation as in the official code (EDSR framework, ``rgb_range`` 255, no mean
shift): the network sees ``x * 255`` and its output is divided by 255.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import ESA_MIN_SIZE, EnhancedSpatialAttention, positive_int
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
    "J. Liu, J. Tang, G. Wu, Residual Feature Distillation Network for Lightweight Image "
    "Super-Resolution, ECCV 2020 Workshops (AIM 2020 efficient SR challenge winner)"
)
SCALES: tuple[int, ...] = STANDARD_SCALES
NEG_SLOPE = 0.05  # LeakyReLU slope of the official code
# Largest distance (input pixels) between an ESA output pixel and any input pixel it reads,
# over every size: see esa_reach(); the maximum (40) is reached at 104 pixels.
ESA_REACH = 40


def esa_reach(size: int) -> int:
    """How far (pixels) ESA's output at any position of a ``size``-pixel side reads its input.

    Exact index arithmetic of the branch along one axis: bilinear resize (align_corners
    False, ratio small/size) reads pooled-grid cells i0, i0 + 1; three 3x3 convs widen that
    by 3 cells each way; pooled cell k covers conv2 outputs 3k .. 3k + 6, i.e. input pixels
    6k .. 6k + 14. Below ESA_MIN_SIZE the branch sees the whole (padded) map.
    """
    if size < ESA_MIN_SIZE:
        return size - 1
    small = ((size - 3) // 2 + 1 - 7) // 3 + 1
    ratio = torch.tensor(small, dtype=torch.float32) / size
    x = torch.arange(size)
    src = ((x.float() + 0.5) * ratio - 0.5).clamp_min(0)
    i0 = src.floor().long()
    i1 = (i0 + 1).clamp_max(small - 1)
    lo = torch.minimum(6 * (i0 - 3).clamp_min(0), x)
    hi = torch.maximum(6 * (i1 + 3).clamp_max(small - 1) + 14, x)
    return int(torch.maximum(x - lo, hi - x).max())


class ESA(EnhancedSpatialAttention):
    """Enhanced spatial attention, (N, F, H, W) -> (N, F, H, W); E = ``channels`` inside.

    On the pooled map: ``conv3_(relu(conv3(relu(conv_max(.)))))``. Maps under
    :data:`ESA_MIN_SIZE` pixels are edge-padded to it before ``conv2``.
    """

    replicate_to = ESA_MIN_SIZE

    def __init__(self, features: int, channels: int) -> None:
        super().__init__()
        e = channels
        self.conv1 = nn.Conv2d(features, e, 1)
        self.conv_f = nn.Conv2d(e, e, 1)
        self.conv_max = nn.Conv2d(e, e, 3, padding=1)
        self.conv2 = nn.Conv2d(e, e, 3, stride=2)
        self.conv3 = nn.Conv2d(e, e, 3, padding=1)
        self.conv3_ = nn.Conv2d(e, e, 3, padding=1)
        self.conv4 = nn.Conv2d(e, features, 1)

    def pooled(self, low: Tensor) -> Tensor:
        return self.conv3_(F.relu(self.conv3(F.relu(self.conv_max(low)))))


class RFDB(nn.Module):
    """Residual feature distillation block, (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, features: int, distilled: int, esa_channels: int) -> None:
        super().__init__()
        f, d = features, distilled
        self.c1_d = nn.Conv2d(f, d, 1)
        self.c1_r = nn.Conv2d(f, f, 3, padding=1)
        self.c2_d = nn.Conv2d(f, d, 1)
        self.c2_r = nn.Conv2d(f, f, 3, padding=1)
        self.c3_d = nn.Conv2d(f, d, 1)
        self.c3_r = nn.Conv2d(f, f, 3, padding=1)
        self.c4 = nn.Conv2d(f, d, 3, padding=1)
        self.c5 = nn.Conv2d(4 * d, f, 1)
        self.esa = ESA(f, esa_channels)

    def forward(self, x: Tensor) -> Tensor:
        kept: list[Tensor] = []
        r = x
        for dist, res in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r), (self.c3_d, self.c3_r)):
            kept.append(F.leaky_relu(dist(r), NEG_SLOPE))
            r = F.leaky_relu(res(r) + r, NEG_SLOPE)
        kept.append(F.leaky_relu(self.c4(r), NEG_SLOPE))
        return self.esa(self.c5(torch.cat(kept, dim=1)))


class RFDN(SRModel):
    """RFDN: ``num_blocks`` RFDBs, 1x1 aggregation over all blocks, pixel shuffle."""

    arch_id = "rfdn"

    def __init__(
        self,
        scale: int = 4,
        num_features: int = 50,
        num_blocks: int = 4,
        distilled_channels: int = 25,
        esa_channels: int = 12,
        img_range: float = 255.0,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "num_features", num_features)
        positive_int(self.arch_id, "num_blocks", num_blocks)
        positive_int(self.arch_id, "distilled_channels", distilled_channels)
        positive_int(self.arch_id, "esa_channels", esa_channels)
        if not float(img_range) > 0:
            raise ConfigError(f"rfdn: img_range must be > 0, got {img_range!r}")
        self.scale = scale
        self.num_blocks = num_blocks
        self.img_range = float(img_range)
        self.hparams = {
            "scale": scale,
            "num_features": num_features,
            "num_blocks": num_blocks,
            "distilled_channels": distilled_channels,
            "esa_channels": esa_channels,
            "img_range": self.img_range,
        }
        f = num_features
        self.fea_conv = nn.Conv2d(3, f, 3, padding=1)
        for i in range(1, num_blocks + 1):
            self.add_module(f"B{i}", RFDB(f, distilled_channels, esa_channels))
        self.c = nn.Sequential(nn.Conv2d(num_blocks * f, f, 1), nn.LeakyReLU(NEG_SLOPE, True))
        self.LR_conv = nn.Conv2d(f, f, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def blocks(self) -> list[RFDB]:
        return [getattr(self, f"B{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        feat = self.fea_conv(x * self.img_range)
        outs: list[Tensor] = []
        out = feat
        for block in self.blocks():
            out = block(out)
            outs.append(out)
        out = self.LR_conv(self.c(torch.cat(outs, dim=1))) + feat
        return self.upsampler(out) / self.img_range

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        # Each block: c1_r -> c2_r -> c3_r -> c4 (3x3 each), then ESA; plus fea_conv,
        # LR_conv and the upsampler conv.
        span = through_conv(span, 3 + (4 + ESA_REACH) * self.num_blocks)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            # Features at x255 scale: the AIM checkpoint's largest conv output on Set14
            # (x4 bicubic LR) is about 3.4e3, 20x below fp16's 65504.
            half_safe=True,
            paper=PAPER,
            global_context="its ESA attention pools with windows tied to the image size",
        )


def rfdn(*, scale: int, **overrides: object) -> RFDN:
    """Preset ``rfdn``: 50 features, 4 RFDBs, 25 distilled, ESA 12 (the AIM 2020 entry,
    0.433M parameters at x4)."""
    kw: dict[str, object] = {
        "num_features": 50,
        "num_blocks": 4,
        "distilled_channels": 25,
        "esa_channels": 12,
    }
    kw.update(overrides)
    return RFDN(scale=scale, **kw)  # type: ignore[arg-type]


_BLOCK_CONVS = ("c1_d", "c1_r", "c2_d", "c2_r", "c3_d", "c3_r", "c4", "c5")
_ESA_CONVS = ("conv1", "conv_f", "conv_max", "conv2", "conv3", "conv3_", "conv4")


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """RFDN under the official names (``fea_conv``, ``B{i}.c1_d`` ..., ``B{i}.esa.*``,
    ``c.0``, ``LR_conv``, ``upsampler.0``)."""
    if "B1.c1_d.weight" not in sd or "fea_conv.weight" not in sd:
        return None
    arch, layout = RFDN.arch_id, "official"
    allowed = re.compile(r"(fea_conv|B\d+\..+|c\.0|LR_conv|upsampler\.0)\.(weight|bias)")
    if extra := [k for k in sd if not allowed.fullmatch(k)]:
        return Miss(arch, layout, f"unexpected tensors {few(extra)}")
    for key in ("c.0.weight", "LR_conv.weight", "upsampler.0.weight"):
        if key not in sd:
            return Miss(arch, layout, f"{key} is missing")
    blocks = indices(sd, r"B(\d+)\.")
    if blocks != list(range(1, len(blocks) + 1)):
        return Miss(arch, layout, f"block indices {blocks} are not 1..n")
    names = [f"B1.{c}" for c in _BLOCK_CONVS] + [f"B1.esa.{c}" for c in _ESA_CONVS]
    if missing := [n for n in names if f"{n}.weight" not in sd]:
        return Miss(arch, layout, f"block 1 lacks {few(missing)}")
    head = sd["fea_conv.weight"]
    f, d = int(head.shape[0]), int(sd["B1.c1_d.weight"].shape[0])
    e = int(sd["B1.esa.conv1.weight"].shape[0])
    scale = shuffle_scale(int(sd["upsampler.0.weight"].shape[0]), 3)
    if head.shape[1] != 3 or scale is None:
        return Miss(
            arch,
            layout,
            f"fea_conv reads {head.shape[1]} channels or upsampler.0 has "
            f"{sd['upsampler.0.weight'].shape[0]} outputs (fits no scale)",
        )
    c5_in, agg = int(sd["B1.c5.weight"].shape[1]), int(sd["c.0.weight"].shape[1])
    if c5_in != 4 * d or agg != len(blocks) * f:
        return Miss(
            arch,
            layout,
            f"B1.c5 reads {c5_in} channels (expected 4 x {d}) or c.0 reads {agg} "
            f"(expected {len(blocks)} x {f})",
        )
    hp = {
        "num_features": f,
        "num_blocks": len(blocks),
        "distilled_channels": d,
        "esa_channels": e,
    }
    return Match(arch, hp, dict(sd), layout, scale)


__all__ = ["ESA", "ESA_MIN_SIZE", "ESA_REACH", "RFDB", "RFDN", "detect", "esa_reach", "rfdn"]
