"""SPAN: Wan, Yu, Li, Chen, Zou, Liu, Yin, Zuo, "Swift Parameter-free Attention Network
for Efficient Super-Resolution", CVPR Workshops (NTIRE) 2024 — winner of the NTIRE 2024
efficient SR challenge (arXiv:2311.12770).

Structure (names as in the official code, hongyuanyu/SPAN):

* ``conv_1``: Conv3XC 3 -> F;
* ``block_1`` .. ``block_n`` (n = 6): SPAB = three Conv3XC with SiLU between, then the
  parameter-free attention ``(c3 + x) * (sigmoid(c3) - 0.5)``;
* ``conv_2``: Conv3XC on the last block's output; ``conv_cat``: 1x1 conv over the
  concatenation [conv_1 out, conv_2 out, block_1 out, SiLU(first Conv3XC) of block_n]
  to ``cat_channels`` (F in the paper; some challenge entries use fewer);
* ``upsampler.0``: conv3x3 cat_channels -> 3*s^2, then pixel shuffle.

Conv3XC is a re-parameterisable 3x3 conv: in training it is a 1x1 (C -> gC) -> 3x3
(-> gF) -> 1x1 (-> F) chain (gain g = 2 in the paper) on the zero-padded input plus a 1x1 shortcut; all of it is
linear, so it equals one 3x3 conv. In eval mode the fused kernel is computed on the fly
(a few small tensor ops) and one conv runs; :meth:`SPAN.reparameterize` makes that
permanent: it drops the branches, keeps ``eval_conv`` only and sets ``hparams["deploy"]``,
so a saved deployed model rebuilds (``SPAN(**hparams)``) in the same single-conv form.

Input normalisation as in the official code: ``(x - mean) * 255``; the output is used
as is (no de-normalisation). ``norm=False`` skips it (checkpoints that carry a ``no_norm``
marker tensor were trained that way). Presets: ``span`` (48 features, the paper's SPAN) and
``span-s`` (28 features, the width of the NTIRE 2024 challenge entry, 0.151M params at x4
when deployed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import DIV2K_RGB_MEAN, positive_int, rgb_triplet
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
    "C. Wan, H. Yu, Z. Li, Y. Chen, Y. Zou, Y. Liu, X. Yin, K. Zuo, Swift Parameter-free "
    "Attention Network for Efficient Super-Resolution, CVPR Workshops (NTIRE) 2024"
)


# x1 last, so that probes that take the first scale pick a super-resolution one.
SCALES: tuple[int, ...] = (*STANDARD_SCALES, 1)


def fuse_conv3xc(
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    w3: Tensor,
    b3: Tensor,
    wsk: Tensor,
    bsk: Tensor,
) -> tuple[Tensor, Tensor]:
    """One 3x3 conv equal to ``conv1x1_3(conv3x3_2(conv1x1_1(pad(x)))) + conv1x1_sk(x)``.

    Shapes: w1 (M, C, 1, 1), w2 (P, M, 3, 3), w3 (O, P, 1, 1), wsk (O, C, 1, 1), biases
    (M,), (P,), (O,), (O,) -> kernel (O, C, 3, 3), bias (O,). The input is zero-padded
    *before* the first 1x1 conv, so border taps see ``b1`` exactly like the fused conv's
    bias does: the two forms agree on the borders too. Differentiable.
    """
    a1, a3 = w1[:, :, 0, 0], w3[:, :, 0, 0]
    kernel = torch.einsum("op,pmuv,mc->ocuv", a3, w2, a1)
    kernel = kernel + F.pad(wsk, (1, 1, 1, 1))
    mid_bias = torch.einsum("pmuv,m->p", w2, b1) + b2
    bias = a3 @ mid_bias + b3 + bsk
    return kernel, bias


class Conv3XC(nn.Module):
    """Re-parameterisable 3x3 conv, (N, C, H, W) -> (N, F, H, W).

    Training form (``deploy=False``): parameters ``sk`` (1x1) and ``conv.{0,1,2}``
    (1x1 C -> gC, 3x3 gC -> gF, 1x1 gF -> F). Deploy form: a single ``eval_conv``.
    """

    def __init__(self, c_in: int, c_out: int, gain: int = 2, deploy: bool = False) -> None:
        super().__init__()
        self.c_in, self.c_out, self.gain = c_in, c_out, gain
        self.deploy = bool(deploy)
        if self.deploy:
            self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        else:
            self.sk = nn.Conv2d(c_in, c_out, 1)
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_in * gain, 1),
                nn.Conv2d(c_in * gain, c_out * gain, 3),
                nn.Conv2d(c_out * gain, c_out, 1),
            )

    def fused(self) -> tuple[Tensor, Tensor]:
        """The equivalent 3x3 kernel (F, C, 3, 3) and bias (F,), differentiable."""
        if self.deploy:
            return self.eval_conv.weight, self.eval_conv.bias
        c1, c2, c3 = self.conv
        return fuse_conv3xc(
            c1.weight, c1.bias, c2.weight, c2.bias, c3.weight, c3.bias, self.sk.weight, self.sk.bias
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.eval_conv(x)
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        # Same function, one conv instead of four: the fast path for inference.
        weight, bias = self.fused()
        return F.conv2d(x, weight, bias, padding=1)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by ``eval_conv`` holding the fused kernel (in place)."""
        if self.deploy:
            return
        weight, bias = self.fused()
        ref = self.sk.weight
        self.eval_conv = nn.Conv2d(self.c_in, self.c_out, 3, padding=1).to(ref.device, ref.dtype)
        self.eval_conv.weight.copy_(weight)
        self.eval_conv.bias.copy_(bias)
        del self.sk
        del self.conv
        self.deploy = True


class SPAB(nn.Module):
    """Swift parameter-free attention block. (N, F, H, W) -> (out, SiLU of first conv).

    The second output is the *activated* first conv: the official code applies an
    in-place SiLU to it before returning it, and its weights were trained that way.
    """

    def __init__(self, channels: int, deploy: bool = False, gain: int = 2) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels, gain=gain, deploy=deploy)
        self.c2_r = Conv3XC(channels, channels, gain=gain, deploy=deploy)
        self.c3_r = Conv3XC(channels, channels, gain=gain, deploy=deploy)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out1 = F.silu(self.c1_r(x))
        out2 = self.c2_r(out1)
        out3 = self.c3_r(F.silu(out2))
        # Symmetric activation centred at 0: large |out3| (edges, texture) gets weight
        # near +-0.5, flat regions near 0, with no extra parameters.
        sim_att = torch.sigmoid(out3) - 0.5
        return (out3 + x) * sim_att, out1


class SPAN(SRModel):
    """SPAN, training form by default; ``deploy=True`` builds the fused single-conv form."""

    arch_id = "span"

    def __init__(
        self,
        scale: int = 4,
        feature_channels: int = 48,
        num_blocks: int = 6,
        img_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        deploy: bool = False,
        norm: bool = True,
        cat_channels: int | None = None,
        gain: int = 2,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "feature_channels", feature_channels)
        positive_int(self.arch_id, "num_blocks", num_blocks)
        cat = feature_channels if cat_channels is None else cat_channels
        positive_int(self.arch_id, "cat_channels", cat)
        positive_int(self.arch_id, "gain", gain)
        if not float(img_range) > 0:
            raise ConfigError(f"span: img_range must be > 0, got {img_range!r}")
        mean = rgb_triplet("span: rgb_mean", rgb_mean)
        self.scale = scale
        self.num_blocks = num_blocks
        self.img_range = float(img_range)
        self.hparams = {
            "scale": scale,
            "feature_channels": feature_channels,
            "num_blocks": num_blocks,
            "img_range": self.img_range,
            "rgb_mean": mean,
            "deploy": bool(deploy),
        }
        self.norm = bool(norm)
        if not self.norm:
            self.hparams["norm"] = False
        # Recorded only when not the paper's, so the weights of before stay as they were.
        if cat != feature_channels:
            self.hparams["cat_channels"] = cat
        if gain != 2:
            self.hparams["gain"] = gain
        # Not in the state dict: the official checkpoints do not carry it either.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        f = feature_channels
        self.conv_1 = Conv3XC(3, f, gain=gain, deploy=deploy)
        for i in range(1, num_blocks + 1):
            self.add_module(f"block_{i}", SPAB(f, deploy=deploy, gain=gain))
        self.conv_cat = nn.Conv2d(4 * f, cat, 1)
        self.conv_2 = Conv3XC(f, f, gain=gain, deploy=deploy)
        self.upsampler = nn.Sequential(
            nn.Conv2d(cat, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def blocks(self) -> list[SPAB]:
        return [getattr(self, f"block_{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        if self.norm:
            x = (x - self.mean.to(x.dtype)) * self.img_range
        feat = self.conv_1(x)
        out = feat
        out_b1 = out_last1 = feat
        for i, block in enumerate(self.blocks()):
            out, out_last1 = block(out)
            if i == 0:
                out_b1 = out
        out = self.conv_2(out)
        out = self.conv_cat(torch.cat([feat, out, out_b1, out_last1], 1))
        return self.upsampler(out)

    def reparameterize(self) -> SPAN:
        """Fuse every Conv3XC into one 3x3 conv, in place; outputs unchanged (fp error only).

        Afterwards ``hparams["deploy"]`` is True, so saving and rebuilding from hparams
        gives the same single-conv network. Returns ``self``.
        """
        for module in self.modules():
            if isinstance(module, Conv3XC):
                module.reparameterize()
        self.hparams["deploy"] = True
        return self

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        span = through_conv(span, 1)  # upsampler conv (conv_cat is 1x1)
        # Longest chain: conv_1, three 3x3 per block, conv_2.
        span = through_conv(span, 1 + 3 * self.num_blocks + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            # Features scale with img_range (inputs up to ~+-150) but pass through bounded
            # attention (|sigmoid - 0.5| < 0.5) every block, so they stay well inside fp16.
            half_safe=True,
            paper=PAPER,
        )


def span(*, scale: int, **overrides: object) -> SPAN:
    """Preset ``span``: 48 feature channels, 6 SPABs (the paper's SPAN)."""
    kw: dict[str, object] = {"feature_channels": 48, "num_blocks": 6}
    kw.update(overrides)
    return SPAN(scale=scale, **kw)  # type: ignore[arg-type]


def span_s(*, scale: int, **overrides: object) -> SPAN:
    """Preset ``span-s``: 28 feature channels, 6 SPABs (NTIRE 2024 entry width)."""
    kw: dict[str, object] = {"feature_channels": 28, "num_blocks": 6}
    kw.update(overrides)
    return SPAN(scale=scale, **kw)  # type: ignore[arg-type]


def span_t(*, scale: int, **overrides: object) -> SPAN:
    """Preset ``span-t``: 16 feature channels, 6 SPABs, trained in the deployed form.

    The built-in default: sized for CPU inference (about 2 output Mpx/s at x2 on two AVX2
    cores). 16 channels keep oneDNN's vector lanes full; the re-parameterisable training
    form costs 4.5x more per step on a CPU, so it is trained as plain 3x3 convs.
    """
    kw: dict[str, object] = {"feature_channels": 16, "num_blocks": 6, "deploy": True}
    kw.update(overrides)
    return SPAN(scale=scale, **kw)  # type: ignore[arg-type]


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """SPAN in the training form (``sk`` + ``conv.*``, with or without the derived
    ``eval_conv`` the official code also saves) or the deployed form (``eval_conv`` only).

    Feature width, block count, the Conv3XC gain (training form), the width of ``conv_cat``
    and the scale come from the shapes.
    """
    if "conv_1.sk.weight" in sd:
        deploy = False
    elif "conv_1.eval_conv.weight" in sd:
        deploy = True
    else:
        return None
    layout = "deploy" if deploy else "train"
    if "conv_cat.weight" not in sd or "upsampler.0.weight" not in sd:
        return Miss(SPAN.arch_id, layout, "conv_cat or upsampler.0 is missing")
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        # In the training form eval_conv is recomputed from the branches in eval mode,
        # so the saved copy (possibly stale) is dropped; no_norm is only a marker.
        if (not deploy and ".eval_conv." in key) or key == "no_norm":
            continue
        out[key] = value
    first = sd["conv_1.sk.weight" if not deploy else "conv_1.eval_conv.weight"]
    f, ch = int(first.shape[0]), int(first.shape[1])
    cat, up = sd["conv_cat.weight"], sd["upsampler.0.weight"]
    scale = shuffle_scale(int(up.shape[0]), 3)
    if ch != 3 or scale is None:
        return Miss(SPAN.arch_id, layout, f"{ch} input channels or an upsampler that fits no scale")
    if cat.dim() != 4 or int(cat.shape[1]) != 4 * f or up.dim() != 4 or up.shape[1] != cat.shape[0]:
        return Miss(
            SPAN.arch_id,
            layout,
            f"conv_cat {tuple(cat.shape)} and upsampler.0 {tuple(up.shape)} do not chain "
            f"4 x {f} features to the upsampler",
        )
    hp: dict[str, object] = {
        "feature_channels": f,
        "num_blocks": len(indices(sd, r"block_(\d+)\.")),
        "deploy": deploy,
    }
    if int(cat.shape[0]) != f:
        hp["cat_channels"] = int(cat.shape[0])
    if not deploy and "conv_1.conv.0.weight" in sd:
        gain, rest = divmod(int(sd["conv_1.conv.0.weight"].shape[0]), 3)
        if rest or gain < 1:
            return Miss(SPAN.arch_id, layout, "conv_1.conv.0 is not a multiple of 3 channels wide")
        if gain != 2:
            hp["gain"] = gain
    if "no_norm" in sd:
        hp["norm"] = False
    return Match(SPAN.arch_id, hp, out, layout, scale)


__all__ = ["SPAB", "SPAN", "Conv3XC", "detect", "fuse_conv3xc", "span", "span_s", "span_t"]
