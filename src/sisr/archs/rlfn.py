"""RLFN: Kong, Li, Liu, Liu, He, Bai, Chen, Fu, "Residual Local Feature Network for
Efficient Super-Resolution", CVPR Workshops (NTIRE) 2022 (arXiv:2205.07514) -- ByteESR,
winner of the NTIRE 2022 efficient SR challenge's runtime track.

Structure (names as in the official code, bytedance/RLFN):

* ``conv_1``: conv3x3 3 -> F;
* ``block_1`` .. ``block_n``: RLFB = three conv3x3 (F -> M -> M -> F) each followed by
  LeakyReLU(0.05), plus the block input; then ``c5`` (1x1) and ESA;
* ``conv_2``: conv3x3 on the last block's output, plus ``conv_1``'s output;
* ``upsampler.0``: conv3x3 F -> 3*s^2, then pixel shuffle.

ESA here is RLFN's trimmed one: ``conv1`` (1x1 F -> E), ``conv2`` (3x3 stride 2, no
padding), a 7x7 stride-3 max pool, ``conv3`` (3x3), bilinear upsampling back, plus
``conv_f`` (1x1) of the ``conv1`` output, ``conv4`` (1x1 E -> F), sigmoid, times the input.

The official code works on 0..255 input and output (``img_range``); sisr scales in
``forward``. Presets: ``rlfn`` (52 features, 6 blocks) and ``rlfn-s`` (48 features), the
paper's two models; the NTIRE 2022 entry (``RLFN_cut``: 46 features, 48 in the block's
middle convs, 4 blocks, keys ``fea_conv`` / ``B#`` / ``LR_conv``) loads by detection.

ESA pools the whole map, so the network is not strictly local: :meth:`RLFN.info`'s
radius bounds which pixels' values reach an output (see :func:`through_esa`), but tiled
output is close to, not bitwise equal to, the untiled one.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import EnhancedSpatialAttention, positive_int, through_esa
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
)
from sisr.archs._detect import Detection, Match, Miss, indices, rename, shuffle_scale
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "F. Kong, M. Li, S. Liu, D. Liu, J. He, Y. Bai, F. Chen, L. Fu, Residual Local Feature "
    "Network for Efficient Super-Resolution, CVPR Workshops (NTIRE) 2022"
)

SCALES: tuple[int, ...] = STANDARD_SCALES

# LeakyReLU slope of the official RLFB.
NEG_SLOPE = 0.05


class ESA(EnhancedSpatialAttention):
    """RLFN's enhanced spatial attention, (N, F, H, W) -> (N, F, H, W).

    ``x * sigmoid(conv4(up(conv3(pool(conv2(c))))) + conv_f(c)))`` with ``c = conv1(x)``.
    """

    def __init__(self, channels: int, esa_channels: int) -> None:
        super().__init__()
        e = esa_channels
        self.conv1 = nn.Conv2d(channels, e, 1)
        self.conv_f = nn.Conv2d(e, e, 1)
        self.conv2 = nn.Conv2d(e, e, 3, stride=2)
        self.conv3 = nn.Conv2d(e, e, 3, padding=1)
        self.conv4 = nn.Conv2d(e, channels, 1)

    def pooled(self, low: Tensor) -> Tensor:
        return self.conv3(low)


class RLFB(nn.Module):
    """Residual local feature block, (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, mid_channels, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_channels, channels, 3, padding=1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ESA(channels, esa_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.c1_r(x), NEG_SLOPE)
        out = F.leaky_relu(self.c2_r(out), NEG_SLOPE)
        out = F.leaky_relu(self.c3_r(out), NEG_SLOPE)
        return self.esa(self.c5(out + x))


class RLFN(SRModel):
    """RLFN: conv, ``num_blocks`` RLFBs, conv + long skip, pixel-shuffle upsampler."""

    arch_id = "rlfn"

    def __init__(
        self,
        scale: int = 4,
        feature_channels: int = 52,
        mid_channels: int | None = None,
        num_blocks: int = 6,
        esa_channels: int = 16,
        img_range: float = 255.0,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        f = positive_int(self.arch_id, "feature_channels", feature_channels)
        m = positive_int(self.arch_id, "mid_channels", f if mid_channels is None else mid_channels)
        positive_int(self.arch_id, "num_blocks", num_blocks)
        positive_int(self.arch_id, "esa_channels", esa_channels)
        if not float(img_range) > 0:
            raise ConfigError(f"rlfn: img_range must be > 0, got {img_range!r}")
        self.scale = scale
        self.num_blocks = num_blocks
        self.img_range = float(img_range)
        self.hparams = {
            "scale": scale,
            "feature_channels": f,
            "mid_channels": m,
            "num_blocks": num_blocks,
            "esa_channels": esa_channels,
            "img_range": self.img_range,
        }
        self.conv_1 = nn.Conv2d(3, f, 3, padding=1)
        for i in range(1, num_blocks + 1):
            self.add_module(f"block_{i}", RLFB(f, m, esa_channels))
        self.conv_2 = nn.Conv2d(f, f, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def blocks(self) -> list[RLFB]:
        return [getattr(self, f"block_{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        feat = self.conv_1(x * self.img_range)
        out = feat
        for block in self.blocks():
            out = block(out)
        return self.upsampler(self.conv_2(out) + feat) / self.img_range

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        span = through_conv(span, 2)  # upsampler conv, conv_2
        for _ in range(self.num_blocks):
            # ESA (its identity path is inside its span), c5 (1x1), three 3x3 convs.
            span = through_conv(through_esa(span, pooled_convs=1), 3)
        span = through_conv(span, 1)  # conv_1
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            # Features are on the 0..255 scale: the published models peak near 2.5e3 on
            # natural images, 25x under fp16's range (fp16 output within 0.05 levels).
            half_safe=True,
            paper=PAPER,
            global_context="its ESA attention pools with windows tied to the image size",
        )


def rlfn(*, scale: int, **overrides: object) -> RLFN:
    """Preset ``rlfn``: 52 features, 6 RLFBs, ESA width 16 (the paper's RLFN)."""
    kw: dict[str, object] = {"feature_channels": 52, "num_blocks": 6, "esa_channels": 16}
    kw.update(overrides)
    return RLFN(scale=scale, **kw)  # type: ignore[arg-type]


def rlfn_s(*, scale: int, **overrides: object) -> RLFN:
    """Preset ``rlfn-s``: 48 features, 6 RLFBs, ESA width 16 (the paper's RLFN-S)."""
    kw: dict[str, object] = {"feature_channels": 48, "num_blocks": 6, "esa_channels": 16}
    kw.update(overrides)
    return RLFN(scale=scale, **kw)  # type: ignore[arg-type]


# The NTIRE 2022 challenge code (ofsoundof/NTIRE2022_ESR models/team04_rlfn.py) names the
# same network differently.
_NTIRE_RULES = (
    (r"fea_conv\.(weight|bias)", r"conv_1.\1"),
    (r"B(\d+)\.(.+)", r"block_\1.\2"),
    (r"LR_conv\.(weight|bias)", r"conv_2.\1"),
    (r"(upsampler\.0\.(?:weight|bias))", r"\1"),
)


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """RLFN under the official names (``conv_1`` / ``block_#`` / ``conv_2``) or the NTIRE
    2022 challenge's (``fea_conv`` / ``B#`` / ``LR_conv``). An RLFB has three 3x3 convs and
    no distillation convs (``c1_d``: that is RFDN / BSRN)."""
    if "conv_1.weight" in sd and "block_1.c1_r.weight" in sd:
        layout = "official"
        renamed = dict(sd)
    elif "fea_conv.weight" in sd and "B1.c3_r.weight" in sd and "B1.c1_d.weight" not in sd:
        layout = "ntire2022"
        renamed, unmatched = rename(sd, _NTIRE_RULES)
        if unmatched:
            return Miss(RLFN.arch_id, layout, f"keys RLFN does not have: {unmatched[:4]}")
    else:
        return None
    if "block_1.c3_r.weight" not in renamed or "block_1.esa.conv1.weight" not in renamed:
        return None
    need = ("conv_1.weight", "conv_2.weight", "upsampler.0.weight")
    missing = [k for k in need if k not in renamed]
    if missing:
        return Miss(RLFN.arch_id, layout, f"missing {', '.join(missing)}")
    first, c1 = renamed["conv_1.weight"], renamed["block_1.c1_r.weight"]
    esa, up = renamed["block_1.esa.conv1.weight"], renamed["upsampler.0.weight"]
    if first.dim() != 4 or c1.dim() != 4 or esa.dim() != 4 or up.dim() != 4:
        return Miss(RLFN.arch_id, layout, "conv_1, c1_r, esa.conv1 or upsampler.0 is not a conv")
    scale = shuffle_scale(int(up.shape[0]), 3)
    if int(first.shape[1]) != 3 or scale is None:
        return Miss(
            RLFN.arch_id,
            layout,
            f"conv_1.weight {tuple(first.shape)} / upsampler.0.weight {tuple(up.shape)}: "
            "not 3 colour channels in and 3 * s^2 out",
        )
    hp: dict[str, object] = {
        "feature_channels": int(first.shape[0]),
        "mid_channels": int(c1.shape[0]),
        "num_blocks": len(indices(renamed, r"block_(\d+)\.")),
        "esa_channels": int(esa.shape[0]),
    }
    return Match(RLFN.arch_id, hp, renamed, layout, scale)


__all__ = ["ESA", "RLFB", "RLFN", "detect", "rlfn", "rlfn_s"]
