"""IMDN: Hui, Gao, Yang, Wang, "Lightweight Image Super-Resolution with Information
Multi-distillation Network", ACM Multimedia 2019 (arXiv:1909.11856), and IMDN-RTC, the
ultra-light variant that won the AI in RTC 2019 super-resolution challenge (same code base,
Zheng222/IMDN, ``IMDN_RTC``).

Structure of IMDN (names as in the official code, so its checkpoints load unchanged):

* ``fea_conv``: conv3x3 3 -> F;
* ``IMDB1`` .. ``IMDBn`` (n = 6): information multi-distillation block. Four 3x3 convs in
  a chain (``c1``: F -> F, ``c2``, ``c3``: R -> F, ``c4``: R -> D, with R = F - D and
  LeakyReLU(0.05) after the first three); after each of the first three the first D
  channels are *distilled* (kept aside) and the remaining R go on. The three distilled
  slices and ``c4``'s output (4D channels) are reweighted by contrast-aware channel
  attention ``cca`` and fused by the 1x1 ``c5`` (4D -> F), plus the block input;
* ``c.0``: 1x1 conv over the concatenated outputs of all blocks (nF -> F), LeakyReLU(0.05);
  ``LR_conv``: conv3x3 F -> F, plus ``fea_conv``'s output;
* ``upsampler.0``: conv3x3 F -> 3s^2, then pixel shuffle.

Contrast-aware channel attention (CCA): per channel, standard deviation + mean over the
whole feature map, then a 1x1 squeeze (4D -> 4D/16) / ReLU / 1x1 excite / sigmoid, and the
input is scaled channel-wise. The statistics are image-wide, so no finite receptive field
holds exactly: every output pixel depends (weakly) on every input pixel.
:meth:`IMDN.info` states the radius of the convolutions alone, which is what tiled
inference overlaps; tiled output is then close to, not equal to, the untiled one.

IMDN-RTC (:class:`IMDNRTC`): 12 features, 5 blocks without CCA, no aggregation over
blocks: ``LR_conv`` is a 1x1 conv on the last block's output, plus ``fea_conv``'s output.
Its official checkpoint names modules positionally (``model.0``, ``model.1.sub.{i}``,
``model.2``); :func:`detect` renames them to the names above. Fully local, so its radius
is exact.

Both take RGB in [0, 1] and return it (no mean shift, no x255), as the official code does.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
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
from sisr.archs._detect import Detection, Match, Miss, few, indices, rename, shuffle_scale
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "Z. Hui, X. Gao, Y. Yang, X. Wang, Lightweight Image Super-Resolution with Information "
    "Multi-distillation Network, ACM Multimedia 2019"
)
PAPER_RTC = (
    PAPER + "; IMDN-RTC: winner of the AI in RTC 2019 super-resolution challenge "
    "(Zheng222/IMDN, IMDN_RTC)"
)
SCALES: tuple[int, ...] = STANDARD_SCALES
NEG_SLOPE = 0.05  # LeakyReLU slope of the official code


def contrast_and_mean(x: Tensor) -> Tensor:
    """Per-channel standard deviation + mean over the whole map: (N, C, H, W) -> (N, C, 1, 1).

    Population variance (divided by H*W), as the paper defines contrast. The variance is
    clamped at the dtype's smallest normal number before the square root: the value is
    unchanged (sqrt(1.2e-38) in fp32), but a constant channel no longer gets an infinite
    gradient (0 * inf = NaN) when training on flat patches.
    """
    var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
    return var.clamp_min(torch.finfo(x.dtype).tiny).sqrt() + mean


class CCALayer(nn.Module):
    """Contrast-aware channel attention, (N, C, H, W) -> (N, C, H, W); ``conv_du.{0,2}``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(contrast_and_mean(x))


class IMDB(nn.Module):
    """Information multi-distillation block, (N, F, H, W) -> (N, F, H, W).

    ``distilled`` = D channels split off after each of ``c1``..``c3``; ``attention`` = the
    CCA hidden width (IMDN) or None (IMDN-RTC's block, no CCA).
    """

    def __init__(self, channels: int, distilled: int, attention: int | None) -> None:
        super().__init__()
        self.distilled = distilled
        self.remaining = channels - distilled
        r = self.remaining
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(r, channels, 3, padding=1)
        self.c3 = nn.Conv2d(r, channels, 3, padding=1)
        self.c4 = nn.Conv2d(r, distilled, 3, padding=1)
        self.c5 = nn.Conv2d(4 * distilled, channels, 1)
        self.cca = CCALayer(4 * distilled, attention) if attention is not None else None

    def forward(self, x: Tensor) -> Tensor:
        kept: list[Tensor] = []
        rest = x
        for conv in (self.c1, self.c2, self.c3):
            d, rest = F.leaky_relu(conv(rest), NEG_SLOPE).split(
                (self.distilled, self.remaining), dim=1
            )
            kept.append(d)
        kept.append(self.c4(rest))
        out = torch.cat(kept, dim=1)
        if self.cca is not None:
            out = self.cca(out)
        return self.c5(out) + x


def _check_widths(arch_id: str, features: int, blocks: int, distilled: int) -> None:
    positive_int(arch_id, "num_features", features, 2)
    positive_int(arch_id, "num_blocks", blocks)
    positive_int(arch_id, "distilled_channels", distilled)
    if distilled >= features:
        raise ConfigError(
            f"{arch_id}: distilled_channels ({distilled}) must be below num_features "
            f"({features}): the rest goes on to the next conv"
        )


def _block_radius() -> int:
    """Longest conv chain through one IMDB: c1 -> c2 -> c3 -> c4 (3x3 each; c5 is 1x1)."""
    return 4


class IMDN(SRModel):
    """IMDN: ``num_blocks`` IMDBs with CCA, 1x1 aggregation over all blocks, pixel shuffle."""

    arch_id = "imdn"

    def __init__(
        self,
        scale: int = 4,
        num_features: int = 64,
        num_blocks: int = 6,
        distilled_channels: int = 16,
        attention_channels: int = 4,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        _check_widths(self.arch_id, num_features, num_blocks, distilled_channels)
        positive_int(self.arch_id, "attention_channels", attention_channels)
        self.scale = scale
        self.num_blocks = num_blocks
        self.hparams = {
            "scale": scale,
            "num_features": num_features,
            "num_blocks": num_blocks,
            "distilled_channels": distilled_channels,
            "attention_channels": attention_channels,
        }
        f = num_features
        self.fea_conv = nn.Conv2d(3, f, 3, padding=1)
        for i in range(1, num_blocks + 1):
            self.add_module(f"IMDB{i}", IMDB(f, distilled_channels, attention_channels))
        self.c = nn.Sequential(nn.Conv2d(num_blocks * f, f, 1), nn.LeakyReLU(NEG_SLOPE, True))
        self.LR_conv = nn.Conv2d(f, f, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def blocks(self) -> list[IMDB]:
        return [getattr(self, f"IMDB{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        feat = self.fea_conv(x)
        outs: list[Tensor] = []
        out = feat
        for block in self.blocks():
            out = block(out)
            outs.append(out)
        out = self.LR_conv(self.c(torch.cat(outs, dim=1))) + feat
        return self.upsampler(out)

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        # upsampler, LR_conv, the blocks' chains, fea_conv (c is 1x1). CCA's image-wide
        # statistics are not counted: no finite radius covers them (see the module doc).
        span = through_conv(span, 1 + 1 + _block_radius() * self.num_blocks + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            half_safe=True,
            paper=PAPER,
            global_context="its channel attention uses the mean and spread of the whole image",
        )


class IMDNRTC(SRModel):
    """IMDN-RTC: ``num_blocks`` IMDBs without CCA, 1x1 ``LR_conv`` on the last, shuffle."""

    arch_id = "imdn-rtc"

    def __init__(
        self,
        scale: int = 2,
        num_features: int = 12,
        num_blocks: int = 5,
        distilled_channels: int = 3,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        _check_widths(self.arch_id, num_features, num_blocks, distilled_channels)
        self.scale = scale
        self.num_blocks = num_blocks
        self.hparams = {
            "scale": scale,
            "num_features": num_features,
            "num_blocks": num_blocks,
            "distilled_channels": distilled_channels,
        }
        f = num_features
        self.fea_conv = nn.Conv2d(3, f, 3, padding=1)
        for i in range(1, num_blocks + 1):
            self.add_module(f"IMDB{i}", IMDB(f, distilled_channels, None))
        self.LR_conv = nn.Conv2d(f, f, 1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def blocks(self) -> list[IMDB]:
        return [getattr(self, f"IMDB{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        feat = self.fea_conv(x)
        out = feat
        for block in self.blocks():
            out = block(out)
        return self.upsampler(self.LR_conv(out) + feat)

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        span = through_conv(span, 1 + _block_radius() * self.num_blocks + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            half_safe=True,
            paper=PAPER_RTC,
        )


def imdn(*, scale: int, **overrides: object) -> IMDN:
    """Preset ``imdn``: 64 features, 6 IMDBs, 16 distilled channels, CCA 64 -> 4 -> 64
    (the paper's IMDN: 694K / 703K / 715K parameters at x2 / x3 / x4)."""
    kw: dict[str, object] = {
        "num_features": 64,
        "num_blocks": 6,
        "distilled_channels": 16,
        "attention_channels": 4,
    }
    kw.update(overrides)
    return IMDN(scale=scale, **kw)  # type: ignore[arg-type]


def imdn_rtc(*, scale: int, **overrides: object) -> IMDNRTC:
    """Preset ``imdn-rtc``: 12 features, 5 blocks without CCA, 3 distilled channels
    (the AI in RTC 2019 winner, 20k parameters at x2)."""
    kw: dict[str, object] = {"num_features": 12, "num_blocks": 5, "distilled_channels": 3}
    kw.update(overrides)
    return IMDNRTC(scale=scale, **kw)  # type: ignore[arg-type]


# The official IMDN_RTC wraps everything in one nn.Sequential: fea_conv, a ShortcutBlock
# (``sub``: the blocks, then LR_conv), the upsampler conv (then the pixel shuffle).
_RTC_RULES = (
    (r"model\.0\.(weight|bias)", r"fea_conv.\1"),
    (r"model\.2\.(weight|bias)", r"upsampler.0.\1"),
)


def _rtc_rename(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]] | str:
    """The positional ``model.*`` names of the official IMDN_RTC -> sisr's names."""
    subs = indices(sd, r"model\.1\.sub\.(\d+)\.")
    if not subs or subs != list(range(len(subs))):
        return f"model.1.sub.* indices {subs} are not 0..n"
    last = subs[-1]
    if f"model.1.sub.{last}.weight" not in sd:
        return f"model.1.sub.{last}.weight (LR_conv after the last block) is missing"
    rules = [
        *_RTC_RULES,
        (rf"model\.1\.sub\.{last}\.(weight|bias)", r"LR_conv.\1"),
        *[(rf"model\.1\.sub\.{i}\.(.+)", rf"IMDB{i + 1}.\1") for i in range(last)],
    ]
    return rename(sd, rules)


def _blocks_hparams(sd: Mapping[str, Tensor], f: int, arch: str, layout: str) -> dict | Miss:
    """num_blocks and distilled_channels from IMDB{i}.c1..c5 (sisr names), checked."""
    blocks = indices(sd, r"IMDB(\d+)\.")
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        return Miss(arch, layout, f"block indices {blocks} are not 1..n")
    for name in ("c1", "c2", "c3", "c4", "c5"):
        if f"IMDB1.{name}.weight" not in sd:
            return Miss(arch, layout, f"IMDB1.{name}.weight is missing")
    d = int(sd["IMDB1.c4.weight"].shape[0])
    r = int(sd["IMDB1.c2.weight"].shape[1])
    c5_in = int(sd["IMDB1.c5.weight"].shape[1])
    if d + r != f or c5_in != 4 * d:
        return Miss(
            arch,
            layout,
            f"distillation widths do not fit {f} features: c4 gives {d}, c2 reads {r}, "
            f"c5 reads {c5_in} (expected {f} = {d} + {r} and 4 x {d})",
        )
    return {"num_features": f, "num_blocks": len(blocks), "distilled_channels": d}


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """IMDN (official names ``fea_conv``/``IMDB{i}``/``c.0``/``LR_conv``/``upsampler.0``) or
    IMDN-RTC (official ``model.0``/``model.1.sub.{i}``/``model.2``, or sisr's names)."""
    if "model.1.sub.0.c1.weight" in sd:
        layout = "rtc"
        renamed = _rtc_rename(sd)
        if isinstance(renamed, str):
            return Miss(IMDNRTC.arch_id, layout, renamed)
        sd, unmatched = renamed
        if unmatched:
            return Miss(IMDNRTC.arch_id, layout, f"unexpected tensors {few(unmatched)}")
    elif "IMDB1.c1.weight" in sd:
        layout = "native"
    else:
        return None
    rtc = "c.0.weight" not in sd and "IMDB1.cca.conv_du.0.weight" not in sd
    arch = IMDNRTC.arch_id if rtc else IMDN.arch_id
    if "fea_conv.weight" not in sd:
        if "fea_conv.0.weight" in sd:
            return Miss(arch, layout, "fea_conv is a strided sequence (IMDN_AS): not supported")
        return Miss(arch, layout, "fea_conv.weight is missing")
    if "upsampler.0.weight" not in sd or "LR_conv.weight" not in sd:
        return Miss(arch, layout, "LR_conv or upsampler.0 is missing")
    head = sd["fea_conv.weight"]
    f = int(head.shape[0])
    scale = shuffle_scale(int(sd["upsampler.0.weight"].shape[0]), 3)
    if head.shape[1] != 3 or scale is None:
        return Miss(
            arch,
            layout,
            f"fea_conv reads {head.shape[1]} channels or upsampler.0 has "
            f"{sd['upsampler.0.weight'].shape[0]} outputs (fits no scale)",
        )
    hp = _blocks_hparams(sd, f, arch, layout)
    if isinstance(hp, Miss):
        return hp
    lr_kernel = int(sd["LR_conv.weight"].shape[-1])
    if rtc:
        if lr_kernel != 1:
            return Miss(arch, layout, f"LR_conv is {lr_kernel}x{lr_kernel}; IMDN-RTC has 1x1")
        return Match(arch, hp, dict(sd), layout, scale)
    if "IMDB1.cca.conv_du.0.weight" not in sd or "c.0.weight" not in sd:
        return Miss(arch, layout, "IMDN needs both cca (attention) and c.0 (aggregation)")
    if lr_kernel != 3:
        return Miss(arch, layout, f"LR_conv is {lr_kernel}x{lr_kernel}; IMDN has 3x3")
    agg = int(sd["c.0.weight"].shape[1])
    if agg != hp["num_blocks"] * f:
        return Miss(arch, layout, f"c.0 reads {agg} channels, not {hp['num_blocks']} x {f}")
    hp["attention_channels"] = int(sd["IMDB1.cca.conv_du.0.weight"].shape[0])
    return Match(arch, hp, dict(sd), layout, scale)


__all__ = [
    "IMDB",
    "IMDN",
    "IMDNRTC",
    "CCALayer",
    "contrast_and_mean",
    "detect",
    "imdn",
    "imdn_rtc",
]
