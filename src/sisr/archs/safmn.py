"""SAFMN: Sun, Dong, Tang, Pan, "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution", ICCV 2023 (arXiv:2302.13800), and the authors' challenge variants.

Structure (names as in the official code, sunny2109/SAFMN): ``to_feat`` (conv3x3 3 -> C),
``feats.0`` .. ``feats.{n-1}`` (feature mixing blocks), ``to_img.0`` (conv3x3 C -> 3*s^2)
and a pixel shuffle. Four variants, chosen by ``variant``:

* ``"safmn"`` (the paper; ``basicsr/archs/safmn_arch.py``): each block is
  ``x + SAFM(LN(x))`` then ``x + CCM(LN(x))``, with a long skip around the blocks.
  SAFM splits the C channels into ``levels`` chunks: chunk 0 goes through a depthwise
  3x3; chunk i >= 1 is max-pooled to (H / 2^i, W / 2^i), depthwise 3x3, and
  nearest-upsampled back; a 1x1 conv (``aggr``) mixes the chunks, and GELU of it
  multiplies the block input. CCM: conv3x3 C -> H, GELU, conv1x1 H -> C. LN is a
  per-pixel layer norm over channels (eps 1e-6). Every conv has a bias.
* ``"ntire2023"`` (the NTIRE 2023 ESR entry, ``NTIRE2023_ESR/models/team15_SAFMN.py``):
  no layer norms; instead one GRN (global response normalisation: channel L2 norms over
  the whole image, ``x + gamma * x * N + beta``) after ``to_feat``; chunk i pools to
  H / 2^(i+1); no bias inside the blocks; no long skip, but the output adds the bilinear
  upsampling of the input.
* ``"plusplus"`` (SAFMN++, the NTIRE 2024 ESR entry, ``NTIRE2024_ESR/models/
  team23_safmnpp.py``): each block is ``x + CCM(SimpleSAFM(x))``. SimpleSAFM: conv3x3
  (``proj``), its first ``modulated_channels`` channels max-pooled to H / 8, depthwise 3x3,
  bilinearly upsampled, GELU of that times themselves, concatenated after the other
  channels, GELU, conv1x1 (``out``). The CCM convs are ``conv1`` / ``conv2``. No biases
  at all; the output adds the bilinear upsampling of the input.
* ``"plusplus-light"`` (light SAFMN++, AIS 2024 real-time 4K SR, ``AIS2024-RTSR/
  light_safmnpp_arch.py``): SAFMN++ blocks without their residual, with a long skip
  around the blocks instead of the bilinear one. Its files name the CCM convs
  ``conv2.conv.0`` / ``conv2.conv.2``; the detector renames them (that naming is what
  tells the two SAFMN++ variants apart).

Input and output are RGB in [0, 1], no mean shift, as in the official code.

Tiling. The pooled branches see blocks of 2^i pixels aligned to the image origin, so the
network is shift-invariant by the largest block only: ``info().size_multiple`` is that
block (8 in every published configuration), tiled inference pads to it and starts every
window on it, and then tiled equals untiled; ``receptive_radius`` is the exact span walk
through the pooled branches. Inputs that are not multiples of it run as the official code
does (uneven adaptive-pooling bins), so a whole-image result on such a size differs slightly
from the padded one sisr's inference and evaluation use (Set5 x4: -0.002 dB for SAFMN++,
-0.007 dB for light SAFMN++ against the official whole-image numbers). The GRN
of ``"ntire2023"`` reads every pixel of the image: that variant declares a global radius
(:data:`GLOBAL_RADIUS`, so images are not split) and size multiple 1 (the official
whole-image result). Inputs smaller than the largest pooling block (where the official
code fails) are replicate-padded to it and the output cropped.

Presets: ``safmn`` (the paper's 36 x 8, 240K parameters at x4), ``safmn++`` (36 x 6,
212K) and ``safmn++-light`` (32 x 2, 66K). The NTIRE 2023 variant has no preset (its global
radius makes generic tiling checks meaningless); its files load by detection.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import phase_radius, positive_int
from sisr.archs._common import STANDARD_SCALES, Span, check_scale, through_conv, through_shuffle
from sisr.archs._detect import Detection, Match, Miss, few, indices, rename, shuffle_scale
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "L. Sun, J. Dong, J. Tang, J. Pan, Spatially-Adaptive Feature Modulation for Efficient "
    "Image Super-Resolution, ICCV 2023"
)

SCALES: tuple[int, ...] = STANDARD_SCALES
VARIANTS: tuple[str, ...] = ("safmn", "ntire2023", "plusplus", "plusplus-light")
# Receptive radius declared by a network whose output depends on the whole image (GRN):
# tiled inference then keeps images up to 2 * GLOBAL_RADIUS a side in one window.
GLOBAL_RADIUS = 4096
# SAFM pyramid depth cap: pooling blocks up to 2^8 pixels.
MAX_LEVELS = 8
# SimpleSAFM's pooling block (SAFMN++).
_PLUS_POOL = 8


def _pad_to(x: Tensor, minimum: int) -> Tensor:
    """Replicate-pad (N, C, H, W) at the bottom/right to at least ``minimum`` a side."""
    ph, pw = max(0, minimum - x.shape[-2]), max(0, minimum - x.shape[-1])
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def max_pool_blocks(x: Tensor, block: int) -> Tensor:
    """(N, C, H, W) -> (N, C, H // block, W // block): the official adaptive max pooling.

    On sizes that are multiples of ``block`` its bins are the aligned blocks, so plain max
    pooling computes it (and exports to ONNX with a dynamic size, which adaptive pooling to
    a size computed from the input does not); other sizes keep the uneven adaptive bins.
    """
    h, w = x.shape[-2:]
    if h % block == 0 and w % block == 0:
        return F.max_pool2d(x, block)
    return F.adaptive_max_pool2d(x, (h // block, w // block))


class LayerNorm2d(nn.Module):
    """Layer norm over channels at each pixel, (N, C, H, W) -> same (the official
    ``channels_first`` formula: biased variance, eps inside the square root)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation, (N, C, H, W) -> same: per-channel L2 norm over all
    pixels, divided by its mean over channels, scales ``x`` (``x + gamma*x*N + beta``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation, (N, C, H, W) -> same.

    Chunk i >= 1 of ``levels`` is max-pooled by ``2 ** (i + pool_shift)`` (adaptive
    pooling to H // that), filtered depthwise and nearest-upsampled back.
    """

    def __init__(self, channels: int, levels: int, pool_shift: int, bias: bool) -> None:
        super().__init__()
        self.levels, self.pool_shift = levels, pool_shift
        chunk = channels // levels
        self.mfr = nn.ModuleList(
            [nn.Conv2d(chunk, chunk, 3, padding=1, groups=chunk, bias=bias) for _ in range(levels)]
        )
        self.aggr = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        out = []
        for i, (xc, conv) in enumerate(zip(x.chunk(self.levels, dim=1), self.mfr, strict=True)):
            if i == 0:
                out.append(conv(xc))
                continue
            k = 2 ** (i + self.pool_shift)
            s = conv(max_pool_blocks(xc, k))
            out.append(F.interpolate(s, size=(h, w), mode="nearest"))
        return F.gelu(self.aggr(torch.cat(out, dim=1))) * x


class CCM(nn.Module):
    """Convolutional channel mixer (paper naming ``ccm.0`` / ``ccm.2``): conv3x3 C -> H,
    GELU, conv1x1 H -> C."""

    def __init__(self, channels: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.ccm = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, bias=bias),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 1, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.ccm(x)


class FMM(nn.Module):
    """Feature mixing module of SAFMN and its NTIRE 2023 variant, (N, C, H, W) -> same.

    ``norm``: the paper's two layer norms (before SAFM and before CCM).
    """

    def __init__(
        self, channels: int, hidden: int, levels: int, pool_shift: int, norm: bool, bias: bool
    ) -> None:
        super().__init__()
        self.norm = norm
        if norm:
            self.norm1 = LayerNorm2d(channels)
            self.norm2 = LayerNorm2d(channels)
        self.safm = SAFM(channels, levels, pool_shift, bias)
        self.ccm = CCM(channels, hidden, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.safm(self.norm1(x) if self.norm else x) + x
        return self.ccm(self.norm2(x) if self.norm else x) + x


class SimpleSAFM(nn.Module):
    """SAFMN++'s modulation, (N, C, H, W) -> same: conv3x3, the first ``modulated``
    channels modulated by their own pooled (/8), filtered, bilinearly upsampled context."""

    def __init__(self, channels: int, modulated: int) -> None:
        super().__init__()
        self.channels, self.modulated = channels, modulated
        self.proj = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.dwconv = nn.Conv2d(modulated, modulated, 3, padding=1, groups=modulated, bias=False)
        self.out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x0, x1 = self.proj(x).split([self.modulated, self.channels - self.modulated], dim=1)
        ctx = self.dwconv(max_pool_blocks(x0, _PLUS_POOL))
        ctx = F.interpolate(ctx, size=(h, w), mode="bilinear", align_corners=False)
        x2 = F.gelu(ctx) * x0
        return self.out(F.gelu(torch.cat([x1, x2], dim=1)))


class PlusCCM(nn.Module):
    """SAFMN++'s channel mixer (``conv1`` / ``conv2``, no bias), (N, C, H, W) -> same."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


class PlusBlock(nn.Module):
    """SAFMN++ block ``CCM(SimpleSAFM(x))``, plus ``x`` when ``residual``."""

    def __init__(self, channels: int, hidden: int, modulated: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = SimpleSAFM(channels, modulated)
        self.conv2 = PlusCCM(channels, hidden)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.residual else out


def _through_pooled(span: Span, block: int) -> Span:
    """Back through max-pool by ``block`` (aligned blocks), depthwise 3x3 on the pooled
    grid, nearest upsampling: output pixel y reads pooled cell y // block and its two
    neighbours, each the max over ``block`` input pixels."""
    return ((span[0] // block - 1) * block, (span[1] // block + 2) * block - 1)


def _through_pooled_bilinear(span: Span, block: int) -> Span:
    """As :func:`_through_pooled` with bilinear upsampling (align_corners=False): y reads
    cells floor((y + 0.5) / block - 0.5) and the next one."""
    lo = (2 * span[0] + 1 - block) // (2 * block)
    hi = (2 * span[1] + 1 - block) // (2 * block) + 1
    return ((lo - 1) * block, (hi + 2) * block - 1)


def _union(*spans: Span) -> Span:
    return (min(s[0] for s in spans), max(s[1] for s in spans))


class SAFMN(SRModel):
    """SAFMN and its challenge variants (see the module docstring); ``variant`` picks one."""

    arch_id = "safmn"

    def __init__(
        self,
        scale: int = 4,
        variant: str = "safmn",
        feature_channels: int = 36,
        num_blocks: int = 8,
        ffn_channels: int = 72,
        levels: int = 4,
        modulated_channels: int = 12,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        if variant not in VARIANTS:
            raise ConfigError(
                f"safmn: variant must be one of {', '.join(VARIANTS)}, got {variant!r}"
            )
        c = positive_int(self.arch_id, "feature_channels", feature_channels)
        positive_int(self.arch_id, "num_blocks", num_blocks)
        positive_int(self.arch_id, "ffn_channels", ffn_channels)
        self.scale, self.variant, self.num_blocks = scale, variant, num_blocks
        self.hparams = {
            "scale": scale,
            "variant": variant,
            "feature_channels": c,
            "num_blocks": num_blocks,
            "ffn_channels": ffn_channels,
        }
        plus = variant.startswith("plusplus")
        self.pool_shift = 1 if variant == "ntire2023" else 0
        if plus:
            positive_int(self.arch_id, "modulated_channels", modulated_channels)
            if modulated_channels >= c:
                raise ConfigError(
                    f"safmn: modulated_channels must be < feature_channels ({c}), "
                    f"got {modulated_channels}"
                )
            self.hparams["modulated_channels"] = modulated_channels
            # Largest pooling block: the input's alignment period and minimum size.
            self.block = _PLUS_POOL
        else:
            positive_int(self.arch_id, "levels", levels, minimum=2)
            if levels > MAX_LEVELS:  # the largest pooling block is also the minimum input
                raise ConfigError(f"safmn: levels must be <= {MAX_LEVELS}, got {levels}")
            if c % levels:
                raise ConfigError(
                    f"safmn: feature_channels ({c}) must be a multiple of levels ({levels})"
                )
            self.hparams["levels"] = levels
            self.block = 2 ** (levels - 1 + self.pool_shift)
        self.levels = levels
        # Registration order = the official state-dict order.
        if variant == "ntire2023":
            self.norm = GRN(c)
        self.to_feat = nn.Conv2d(3, c, 3, padding=1, bias=not plus)
        if plus:
            blocks: list[nn.Module] = [
                PlusBlock(c, ffn_channels, modulated_channels, residual=variant == "plusplus")
                for _ in range(num_blocks)
            ]
        else:
            paper = variant == "safmn"
            blocks = [
                FMM(c, ffn_channels, levels, self.pool_shift, norm=paper, bias=paper)
                for _ in range(num_blocks)
            ]
        self.feats = nn.Sequential(*blocks)
        self.to_img = nn.Sequential(
            nn.Conv2d(c, 3 * scale * scale, 3, padding=1, bias=not plus), nn.PixelShuffle(scale)
        )

    @property
    def _bilinear_skip(self) -> bool:
        return self.variant in ("ntire2023", "plusplus")

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        h, w = x.shape[-2:]
        x = _pad_to(x, self.block)
        ident = None
        if self._bilinear_skip:
            ident = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        feat = self.to_feat(x)
        if self.variant == "ntire2023":
            feat = self.norm(feat)
        out = self.feats(feat)
        if not self._bilinear_skip:
            out = out + feat
        out = self.to_img(out)
        if ident is not None:
            out = out + ident
        return out[..., : h * self.scale, : w * self.scale]

    def _block_walk(self, span: Span) -> Span:
        """One block, output span -> input span."""
        if self.variant.startswith("plusplus"):
            span = through_conv(span, 1)  # CCM conv1 (conv2 is 1x1)
            span = _union(span, _through_pooled_bilinear(span, _PLUS_POOL))
            return through_conv(span, 1)  # proj
        span = through_conv(span, 1)  # CCM
        levels = [through_conv(span, 1)]  # chunk 0: depthwise 3x3
        levels += [_through_pooled(span, 2 ** (i + self.pool_shift)) for i in range(1, self.levels)]
        return _union(span, *levels)

    def _walk(self, span: Span) -> Span:
        """Output (HR) span -> LR span, last layer first."""
        lr = through_conv(through_shuffle(span, self.scale), 1)  # to_img
        for _ in range(self.num_blocks):
            lr = self._block_walk(lr)
        lr = through_conv(lr, 1)  # to_feat
        if self._bilinear_skip:  # bilinear x s of the input: LR taps floor(u) and floor(u) + 1
            s = self.scale
            lr = _union(
                lr, ((2 * span[0] + 1 - s) // (2 * s), (2 * span[1] + 1 - s) // (2 * s) + 1)
            )
        return lr

    def info(self) -> ArchInfo:
        if self.variant == "ntire2023":
            radius, multiple = GLOBAL_RADIUS, 1
        else:
            # Pooling blocks are aligned to the origin: the radius depends on the phase.
            radius = phase_radius(self._walk, self.scale, period=self.block)
            multiple = self.block
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius,
            size_multiple=multiple,
            # GRN sums squares over the whole image: fp16 could overflow on large inputs.
            half_safe=self.variant != "ntire2023",
            paper=PAPER,
            global_context=(
                "its norm layers sum over the whole image" if self.variant == "ntire2023" else ""
            ),
        )


def safmn(*, scale: int, **overrides: object) -> SAFMN:
    """Preset ``safmn``: the paper's SAFMN, 36 channels, 8 blocks, CCM width 72 (its large
    classic-SR model SAFMN-L is this with ``feature_channels=128, num_blocks=16,
    ffn_channels=256``)."""
    kw: dict[str, object] = {
        "variant": "safmn",
        "feature_channels": 36,
        "num_blocks": 8,
        "ffn_channels": 72,
    }
    kw.update(overrides)
    return SAFMN(scale=scale, **kw)  # type: ignore[arg-type]


def safmn_pp(*, scale: int, **overrides: object) -> SAFMN:
    """Preset ``safmn++``: SAFMN++ (NTIRE 2024 entry), 36 channels, 6 blocks, CCM width 54,
    12 modulated channels."""
    kw: dict[str, object] = {
        "variant": "plusplus",
        "feature_channels": 36,
        "num_blocks": 6,
        "ffn_channels": 54,
        "modulated_channels": 12,
    }
    kw.update(overrides)
    return SAFMN(scale=scale, **kw)  # type: ignore[arg-type]


def safmn_pp_light(*, scale: int, **overrides: object) -> SAFMN:
    """Preset ``safmn++-light``: light SAFMN++ (AIS 2024 real-time 4K SR winner), 32
    channels, 2 blocks, CCM width 48, 16 modulated channels."""
    kw: dict[str, object] = {
        "variant": "plusplus-light",
        "feature_channels": 32,
        "num_blocks": 2,
        "ffn_channels": 48,
        "modulated_channels": 16,
    }
    kw.update(overrides)
    return SAFMN(scale=scale, **kw)  # type: ignore[arg-type]


# Light SAFMN++ files name the CCM convs as an nn.Sequential (conv.0 / conv.2).
_LIGHT_RULES = (
    (r"(feats\.\d+\.conv2)\.conv\.0\.weight", r"\1.conv1.weight"),
    (r"(feats\.\d+\.conv2)\.conv\.2\.weight", r"\1.conv2.weight"),
    (r"(.*)", r"\1"),
)


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """SAFMN (paper: ``feats.#.norm1``), its NTIRE 2023 variant (``norm.gamma``, no block
    norms), SAFMN++ (``feats.#.conv1.proj``) and light SAFMN++ (``conv2.conv.0``)."""
    if "to_feat.weight" not in sd or "to_img.0.weight" not in sd:
        return None
    if "feats.0.conv1.proj.weight" in sd:
        light = "feats.0.conv2.conv.0.weight" in sd
        variant = "plusplus-light" if light else "plusplus"
        out, _ = rename(sd, _LIGHT_RULES) if light else (dict(sd), [])
        try:
            ffn = int(out["feats.0.conv2.conv1.weight"].shape[0])
            modulated = int(out["feats.0.conv1.dwconv.weight"].shape[0])
        except KeyError as exc:
            return Miss(SAFMN.arch_id, variant, f"{exc.args[0]} is missing")
        extra: dict[str, object] = {"modulated_channels": modulated}
    elif "feats.0.safm.aggr.weight" in sd:
        paper = "feats.0.norm1.weight" in sd
        variant = "safmn" if paper else "ntire2023"
        if not paper and "norm.gamma" not in sd:
            return Miss(SAFMN.arch_id, variant, "neither block layer norms nor the GRN norm.gamma")
        out = dict(sd)
        try:
            ffn = int(sd["feats.0.ccm.ccm.0.weight"].shape[0])
        except KeyError:
            return Miss(SAFMN.arch_id, variant, "feats.0.ccm.ccm.0.weight is missing")
        levels = len(indices(sd, r"feats\.0\.safm\.mfr\.(\d+)\."))
        extra = {"levels": levels}
        c = int(sd["to_feat.weight"].shape[0])
        chunk = int(sd["feats.0.safm.mfr.0.weight"].shape[0]) if levels else 0
        if levels < 2 or chunk * levels != c:
            return Miss(
                SAFMN.arch_id,
                variant,
                f"{levels} SAFM levels of {chunk} channels do not split {c} features",
            )
    else:
        return None
    first = sd["to_feat.weight"]
    c, ch = int(first.shape[0]), int(first.shape[1])
    scale = shuffle_scale(int(sd["to_img.0.weight"].shape[0]), 3)
    if ch != 3 or scale is None:
        return Miss(
            SAFMN.arch_id,
            variant,
            f"to_feat.weight {tuple(first.shape)} / to_img.0.weight "
            f"{tuple(sd['to_img.0.weight'].shape)}: not RGB in, or no pixel-shuffle scale",
        )
    blocks = indices(sd, r"feats\.(\d+)\.")
    if blocks != list(range(len(blocks))) or not blocks:
        return Miss(
            SAFMN.arch_id, variant, f"block indices are not 0..n-1: {few(map(str, blocks))}"
        )
    hp: dict[str, object] = {
        "variant": variant,
        "feature_channels": c,
        "num_blocks": len(blocks),
        "ffn_channels": ffn,
        **extra,
    }
    return Match(SAFMN.arch_id, hp, out, variant, scale)


__all__ = [
    "GLOBAL_RADIUS",
    "SAFM",
    "SAFMN",
    "VARIANTS",
    "detect",
    "safmn",
    "safmn_pp",
    "safmn_pp_light",
]
