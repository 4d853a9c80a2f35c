"""BSRN: Li, Liu, Chen, Cai, Gu, Qiao, Dong, "Blueprint Separable Residual Network for
Efficient Image Super-Resolution", CVPR Workshops (NTIRE) 2022 (arXiv:2205.05996). Its
small variant BSRN-S won the NTIRE 2022 efficient SR challenge's model complexity track.

Structure (names as in the official code, xiaom233/BSRN):

* the RGB input is repeated four times (12 channels); ``fea_conv``: BSConv 12 -> F;
* ``B1`` .. ``Bn``: ESDB = three residual BSConvs (``c#_r``, each ``GELU(conv(x) + x)``)
  with 1x1 distillation convs (``c#_d``, F -> D) beside them, a last BSConv ``c4``
  (F -> D), the four D-wide results concatenated and fused by ``c5`` (1x1 4D -> F), then
  ESA and a block-level residual;
* ``c1``: 1x1 over all blocks' outputs (nF -> F), GELU, ``c2`` (BSConv), plus
  ``fea_conv``'s output; ``upsampler.0``: conv3x3 F -> 3*s^2, pixel shuffle.

A BSConv (blueprint separable convolution, BSConv-U) is a pointwise 1x1 conv ``pw``
followed by a depthwise 3x3 conv ``dw``. ESA here: ``conv1`` (1x1 F -> E), ``conv2``
(3x3 stride 2, no padding), a 7x7 stride-3 max pool, three BSConvs on the pooled map
(``conv_max``, ``conv3`` with GELU, ``conv3_``), bilinear upsampling back, plus ``conv_f``
(1x1), ``conv4`` (1x1 E -> F), sigmoid, times the input.

Two published variants differ in more than width, so ``variant`` selects one:

* ``"paper"`` (``BSRN`` in BSRN_arch.py, the paper's x2/x3/x4 models): ``pw`` without
  bias, ESA's ``conv2`` a BSConv, and after ESA a contrast-aware channel attention
  (``cca``: per-channel std + mean -> 1x1 -> ReLU -> 1x1 -> sigmoid, times the input);
* ``"ntire2022"`` (``RFDNFINALB5``, the BSRN-S challenge entry): every 1x1 is a Linear
  layer with bias (stored 2-d; loaded here as 1x1 convs), ESA's ``conv2`` a plain conv,
  no CCA; after ESA a per-channel weight ``cw`` and a 1x1 ``conv_out``.

Presets: ``bsrn`` (64 features, 8 blocks, paper) and ``bsrn-s`` (48 features, 5 blocks,
NTIRE 2022). Input and output are RGB in [0, 1], as in the official code.

Not strictly local: ESA pools the map (see :func:`through_esa`) and CCA averages over the
whole image, so tiled output is close to, not bitwise equal to, the untiled one;
:meth:`BSRN.info`'s radius covers the convolutions and ESA only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
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
from sisr.archs._detect import Detection, Match, Miss, indices, shuffle_scale
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "Z. Li, Y. Liu, X. Chen, H. Cai, J. Gu, Y. Qiao, C. Dong, Blueprint Separable Residual "
    "Network for Efficient Image Super-Resolution, CVPR Workshops (NTIRE) 2022"
)

SCALES: tuple[int, ...] = STANDARD_SCALES
VARIANTS = ("paper", "ntire2022")


class BSConv(nn.Module):
    """Blueprint separable conv (BSConv-U): 1x1 ``pw`` C -> O, then depthwise 3x3 ``dw``.

    (N, C, H, W) -> (N, O, H', W'); ``stride=2, padding=0`` gives ESA's reducing conv.
    """

    def __init__(
        self, c_in: int, c_out: int, *, pw_bias: bool, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__()
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=pw_bias)
        self.dw = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=padding, groups=c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.dw(self.pw(x))


def contrast(x: Tensor) -> Tensor:
    """Per-channel standard deviation over the image, (N, C, H, W) -> (N, C, 1, 1).

    Summed in at least float32 (a no-op for float32 input): a half-precision sum over a
    large image overflows fp16 (65504) long before the mean would.
    """
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    n = x.shape[2] * x.shape[3]
    mean = xf.sum(3, keepdim=True).sum(2, keepdim=True) / n
    std = ((xf - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / n).sqrt()
    return std.to(x.dtype)


class CCA(nn.Module):
    """Contrast-aware channel attention, (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(contrast(x) + F.adaptive_avg_pool2d(x, 1))


class ESA(EnhancedSpatialAttention):
    """BSRN's enhanced spatial attention, (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, channels: int, esa_channels: int, *, paper: bool) -> None:
        super().__init__()
        e, bias = esa_channels, not paper
        self.conv1 = nn.Conv2d(channels, e, 1)
        self.conv_f = nn.Conv2d(e, e, 1)
        self.conv_max = BSConv(e, e, pw_bias=bias)
        self.conv2: nn.Module = (
            BSConv(e, e, pw_bias=bias, stride=2, padding=0)
            if paper
            else nn.Conv2d(e, e, 3, stride=2)
        )
        self.conv3 = BSConv(e, e, pw_bias=bias)
        self.conv3_ = BSConv(e, e, pw_bias=bias)
        self.conv4 = nn.Conv2d(e, channels, 1)

    def pooled(self, low: Tensor) -> Tensor:
        return self.conv3_(F.gelu(self.conv3(F.gelu(self.conv_max(low)))))


class ESDB(nn.Module):
    """Efficient separable distillation block, (N, F, H, W) -> (N, F, H, W)."""

    def __init__(
        self, channels: int, distilled: int, esa_channels: int, cca_channels: int, *, paper: bool
    ) -> None:
        super().__init__()
        f, d, bias = channels, distilled, not paper
        self.paper = paper
        self.c1_d = nn.Conv2d(f, d, 1)
        self.c1_r = BSConv(f, f, pw_bias=bias)
        self.c2_d = nn.Conv2d(f, d, 1)
        self.c2_r = BSConv(f, f, pw_bias=bias)
        self.c3_d = nn.Conv2d(f, d, 1)
        self.c3_r = BSConv(f, f, pw_bias=bias)
        self.c4 = BSConv(f, d, pw_bias=bias)
        self.c5 = nn.Conv2d(4 * d, f, 1)
        self.esa = ESA(f, esa_channels, paper=paper)
        if paper:
            self.cca = CCA(f, cca_channels)
        else:
            # Per-channel weights, initialised around 1 as in the official code.
            self.cw = nn.Parameter(1 + 0.2 * torch.randn(1, f))
            self.conv_out = nn.Conv2d(f, f, 1)

    def forward(self, x: Tensor) -> Tensor:
        d1 = F.gelu(self.c1_d(x))
        r1 = F.gelu(self.c1_r(x) + x)
        d2 = F.gelu(self.c2_d(r1))
        r2 = F.gelu(self.c2_r(r1) + r1)
        d3 = F.gelu(self.c3_d(r2))
        r3 = F.gelu(self.c3_r(r2) + r2)
        r4 = F.gelu(self.c4(r3))
        out = self.esa(self.c5(torch.cat([d1, d2, d3, r4], 1)))
        return self._attend(out) + x

    def _attend(self, out: Tensor) -> Tensor:
        """After ESA: CCA (paper) or channel weights and a 1x1 (NTIRE 2022)."""
        if self.paper:
            return self.cca(out)
        return self.conv_out(out * self.cw.view(1, -1, 1, 1))


class BSRN(SRModel):
    """BSRN: BSConv stem, ``num_blocks`` ESDBs, 1x1 fusion + BSConv + long skip, shuffle."""

    arch_id = "bsrn"

    def __init__(
        self,
        scale: int = 4,
        feature_channels: int = 64,
        num_blocks: int = 8,
        variant: str = "paper",
        distilled_channels: int | None = None,
        esa_channels: int | None = None,
        cca_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        f = positive_int(self.arch_id, "feature_channels", feature_channels)
        positive_int(self.arch_id, "num_blocks", num_blocks)
        if variant not in VARIANTS:
            raise ConfigError(
                f"bsrn: variant must be one of {', '.join(VARIANTS)}, got {variant!r}"
            )
        paper = variant == "paper"
        # Official widths: D = F / 2, E = F / 4, CCA hidden = F / 16.
        d = positive_int(
            self.arch_id,
            "distilled_channels",
            f // 2 if distilled_channels is None else distilled_channels,
        )
        e = positive_int(
            self.arch_id, "esa_channels", f // 4 if esa_channels is None else esa_channels
        )
        self.scale = scale
        self.num_blocks = num_blocks
        self.hparams: dict[str, object] = {
            "scale": scale,
            "feature_channels": f,
            "num_blocks": num_blocks,
            "variant": variant,
            "distilled_channels": d,
            "esa_channels": e,
        }
        h = 0
        if paper:
            h = positive_int(
                self.arch_id, "cca_channels", f // 16 if cca_channels is None else cca_channels
            )
            self.hparams["cca_channels"] = h
        elif cca_channels is not None:
            raise ConfigError("bsrn: cca_channels applies to variant 'paper' only (no CCA)")
        bias = not paper
        self.fea_conv = BSConv(12, f, pw_bias=bias)
        for i in range(1, num_blocks + 1):
            self.add_module(f"B{i}", ESDB(f, d, e, h, paper=paper))
        self.c1 = nn.Conv2d(num_blocks * f, f, 1)
        self.c2 = BSConv(f, f, pw_bias=bias)
        self.upsampler = nn.Sequential(
            nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def blocks(self) -> list[ESDB]:
        return [getattr(self, f"B{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        feat = self.fea_conv(x.repeat(1, 4, 1, 1))
        outs: list[Tensor] = []
        out = feat
        for block in self.blocks():
            out = block(out)
            outs.append(out)
        trunk = F.gelu(self.c1(torch.cat(outs, 1)))
        return self.upsampler(self.c2(trunk) + feat)

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        span = through_conv(span, 2)  # upsampler conv, c2's depthwise 3x3 (c1 is 1x1)
        for _ in range(self.num_blocks):
            # ESA (three BSConvs on the pooled map), c5 (1x1), then the longest chain:
            # c1_r, c2_r, c3_r, c4 (one depthwise 3x3 each).
            span = through_conv(through_esa(span, pooled_convs=3), 4)
        span = through_conv(span, 1)  # fea_conv
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            # [0, 1] input, GELU and sigmoid-gated attention: activations stay small.
            half_safe=True,
            paper=PAPER,
            global_context=(
                "its ESA and channel attention pool over the whole image"
                if self.hparams["variant"] == "paper"
                else "its ESA attention pools with windows tied to the image size"
            ),
        )


def bsrn(*, scale: int, **overrides: object) -> BSRN:
    """Preset ``bsrn``: 64 features, 8 ESDBs, ESA and CCA (the paper's BSRN)."""
    kw: dict[str, object] = {"feature_channels": 64, "num_blocks": 8, "variant": "paper"}
    kw.update(overrides)
    return BSRN(scale=scale, **kw)  # type: ignore[arg-type]


def bsrn_s(*, scale: int, **overrides: object) -> BSRN:
    """Preset ``bsrn-s``: 48 features, 5 blocks, the NTIRE 2022 form (BSRN-S)."""
    kw: dict[str, object] = {"feature_channels": 48, "num_blocks": 5, "variant": "ntire2022"}
    kw.update(overrides)
    return BSRN(scale=scale, **kw)  # type: ignore[arg-type]


def _as_conv(t: Tensor) -> Tensor:
    """A Linear weight (O, C) as a 1x1 conv kernel (O, C, 1, 1); conv kernels unchanged."""
    return t[:, :, None, None] if t.dim() == 2 else t


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """BSRN (``fea_conv.pw`` + ``B#.c1_d`` + ``B#.c4.pw``), either variant, either upsampler
    key (``upsampler.upsampleOneStep.0``, the official one, or ``upsampler.0``)."""
    if "fea_conv.pw.weight" not in sd or "B1.c4.pw.weight" not in sd:
        return None
    paper = "B1.cw" not in sd
    layout = "paper" if paper else "ntire2022"
    up_key = next(
        (k for k in ("upsampler.upsampleOneStep.0", "upsampler.0") if f"{k}.weight" in sd), None
    )
    if up_key is None:
        other = sorted({k.rsplit(".", 1)[0] for k in sd if k.startswith("upsampler.")})
        return Miss(
            BSRN.arch_id,
            layout,
            f"only the one-step pixel-shuffle upsampler is supported; this has {other[:4]}",
        )
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.startswith(f"{up_key}."):
            key = "upsampler.0." + key.rsplit(".", 1)[1]
        elif key.endswith(".weight") and value.dim() == 2:
            value = _as_conv(value)  # a Linear layer of the challenge code
        out[key] = value
    stem, c1d = out["fea_conv.pw.weight"], out.get("B1.c1_d.weight")
    esa, up = out.get("B1.esa.conv1.weight"), out["upsampler.0.weight"]
    if c1d is None or esa is None or stem.dim() != 4 or c1d.dim() != 4 or esa.dim() != 4:
        return Miss(BSRN.arch_id, layout, "B1.c1_d or B1.esa.conv1 is missing or not a conv")
    scale = shuffle_scale(int(up.shape[0]), 3)
    if int(stem.shape[1]) != 12 or scale is None:
        return Miss(
            BSRN.arch_id,
            layout,
            f"fea_conv.pw.weight {tuple(stem.shape)} / upsampler {tuple(up.shape)}: not "
            "12 (4 x RGB) channels in and 3 * s^2 out",
        )
    hp: dict[str, object] = {
        "feature_channels": int(stem.shape[0]),
        "num_blocks": len(indices(out, r"B(\d+)\.")),
        "variant": layout,
        "distilled_channels": int(c1d.shape[0]),
        "esa_channels": int(esa.shape[0]),
    }
    if paper:
        cca = out.get("B1.cca.conv_du.0.weight")
        if cca is None:
            return Miss(BSRN.arch_id, layout, "no B1.cw and no B1.cca: neither BSRN variant")
        hp["cca_channels"] = int(cca.shape[0])
    return Match(BSRN.arch_id, hp, out, layout, scale)


__all__ = ["BSRN", "CCA", "ESA", "ESDB", "BSConv", "bsrn", "bsrn_s", "contrast", "detect"]
