"""FMEN: Du, Liu, Liu, Tang, Wu, Fu, "Fast and Memory-Efficient Network Towards Efficient
Image Super-Resolution", CVPR Workshops (NTIRE) 2022 (arXiv:2204.08397); its small version
FMEN-S had the lowest memory use and second shortest runtime in the NTIRE 2022 efficient SR
challenge.

Structure (names as in the official code, NJU-Jet/FMEN):

* ``head``: conv3x3 3 -> F; ``warmup.0``: conv3x3 F -> F; ``warmup.1``: an HFAB;
* ``ERBs.{i}`` / ``HFABs.{i}`` (i < n): enhanced residual block then attention block;
* ``lr_conv``: conv3x3, plus the ``head`` output (long skip); ``tail.0``: conv3x3
  F -> 3*s^2, then pixel shuffle.

ERB (enhanced residual block): RRRB -> LeakyReLU(0.1) -> RRRB. HFAB (high-frequency
attention block): conv3x3 F -> M (``squeeze``), LeakyReLU, ``up_blocks`` ERBs of M
channels, LeakyReLU, conv3x3 M -> F (``excitate``), sigmoid, times the block input. The
warm-up HFAB has its own width (``warmup_mid_features``, M - 4 in the official code).

Re-parameterisation. In the training form an RRRB is ``x + reduce(fea(pad_b0(expand(x)))
+ expand(x))`` (1x1 expand by ``ratio``, 3x3, 1x1 reduce, two identities) and an HFAB
batch-normalises before ``squeeze``, before ``excitate`` and after it. The expand output
is padded with the expand bias and the normalised maps with the norm's bias (what a zero
input would give), so everything is linear up to each activation, borders included: an
RRRB equals one 3x3 conv (``rep_conv``) and, with running statistics, the norms fold into
``squeeze`` / ``excitate``. :meth:`FMEN.reparameterize` does that in place and sets
``hparams["deploy"]``; the deploy form holds exactly the official test network's tensors
(``test_fmen.py``), which is the form the authors published. In eval mode the training
form runs each RRRB as its fused conv (computed on the fly).

Input normalisation as in the official (EDSR-framework) code: ``x * 255``, no mean shift;
the output is divided by 255. Presets: ``fmen`` (FMEN-S, the published network: 50
features, 4 ERB/HFAB pairs, attention width 16, warm-up width 12, ERB counts 2,1,1,1,1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
from sisr.archs.span import fuse_conv3xc
from sisr.errors import ConfigError

PAPER = (
    "Z. Du, D. Liu, J. Liu, J. Tang, G. Wu, L. Fu, Fast and Memory-Efficient Network "
    "Towards Efficient Image Super-Resolution, CVPR Workshops (NTIRE) 2022"
)

SCALES: tuple[int, ...] = STANDARD_SCALES
LRELU_SLOPE = 0.1


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def pad_with(x: Tensor, values: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H+2, W+2): a one-pixel border holding ``values`` (C,)
    per channel (what the official code pads with, so that fused convs match)."""
    c, h, w = x.shape[1:]
    border = torch.ones(1, 1, h + 2, w + 2, dtype=torch.bool, device=x.device)
    border[..., 1:-1, 1:-1] = False
    return torch.where(border, values.to(x.dtype).view(1, c, 1, 1), F.pad(x, (1, 1, 1, 1)))


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) of a batch norm with its running statistics: bn(x) =
    scale * x + shift (shift is what the official code pads with)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn_before(w: Tensor, b: Tensor, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """conv(bn(x)) as one conv, the bn map padded with ``shift``: kernel (O, C, k, k)."""
    return w * scale.view(1, -1, 1, 1), b + torch.einsum("ocuv,c->o", w, shift)


def fuse_rrrb(
    w0: Tensor, b0: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> tuple[Tensor, Tensor]:
    """One 3x3 conv equal to ``x + reduce(fea(pad_b0(expand(x))) + expand(x))``.

    Shapes: w0 (R, C, 1, 1), w1 (R, R, 3, 3), w2 (C, R, 1, 1), biases (R,), (R,), (C,) ->
    kernel (C, C, 3, 3), bias (C,). The inner identity joins the 3x3 kernel's centre and
    the outer one is a 1x1 shortcut, so this is SPAN's Conv3XC fusion. Differentiable.
    """
    r, c = w0.shape[0], w0.shape[1]
    inner = w1.clone()
    inner[:, :, 1, 1] += torch.eye(r, dtype=w1.dtype, device=w1.device)
    eye = torch.eye(c, dtype=w0.dtype, device=w0.device).view(c, c, 1, 1)
    return fuse_conv3xc(w0, b0, inner, b1, w2, b2, eye, torch.zeros_like(b2))


class RRRB(nn.Module):
    """Residual-in-residual re-parameterisable block, (N, C, H, W) -> same.

    Training form: ``expand_conv`` (1x1 C -> rC), ``fea_conv`` (3x3, unpadded),
    ``reduce_conv`` (1x1 rC -> C). Deploy form: ``rep_conv`` (3x3).
    """

    def __init__(self, channels: int, ratio: int = 2, deploy: bool = False) -> None:
        super().__init__()
        self.channels, self.ratio, self.deploy = channels, ratio, bool(deploy)
        if self.deploy:
            self.rep_conv = nn.Conv2d(channels, channels, 3, padding=1)
        else:
            mid = ratio * channels
            self.expand_conv = nn.Conv2d(channels, mid, 1)
            self.fea_conv = nn.Conv2d(mid, mid, 3)
            self.reduce_conv = nn.Conv2d(mid, channels, 1)

    def fused(self) -> tuple[Tensor, Tensor]:
        """The equivalent 3x3 kernel (C, C, 3, 3) and bias (C,), differentiable."""
        if self.deploy:
            return self.rep_conv.weight, self.rep_conv.bias
        e, f, r = self.expand_conv, self.fea_conv, self.reduce_conv
        return fuse_rrrb(e.weight, e.bias, f.weight, f.bias, r.weight, r.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.rep_conv(x)
        if not self.training:
            weight, bias = self.fused()
            return F.conv2d(x, weight, bias, padding=1)
        out = self.expand_conv(x)
        out = self.fea_conv(pad_with(out, self.expand_conv.bias)) + out
        return self.reduce_conv(out) + x

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.deploy:
            return
        weight, bias = self.fused()
        ref = self.expand_conv.weight
        conv = nn.Conv2d(self.channels, self.channels, 3, padding=1).to(ref.device, ref.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        del self.expand_conv, self.fea_conv, self.reduce_conv
        self.rep_conv = conv
        self.deploy = True


class ERB(nn.Module):
    """Enhanced residual block: RRRB -> LeakyReLU(0.1) -> RRRB, (N, C, H, W) -> same."""

    def __init__(self, channels: int, ratio: int = 2, deploy: bool = False) -> None:
        super().__init__()
        self.conv1 = RRRB(channels, ratio, deploy)
        self.conv2 = RRRB(channels, ratio, deploy)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(_act(self.conv1(x)))


class HFAB(nn.Module):
    """High-frequency attention block, (N, F, H, W) -> same: ``x * sigmoid(...)``.

    Training form: ``bn1`` -> ``squeeze`` (3x3 F -> M, unpadded after padding with the
    norm's shift) -> ERBs -> ``bn2`` -> ``excitate`` (3x3 M -> F, likewise) -> ``bn3``.
    Deploy form: the norms folded into ``squeeze`` / ``excitate`` (zero-padded).
    """

    def __init__(
        self, channels: int, mid: int, num_erbs: int, ratio: int = 2, deploy: bool = False
    ) -> None:
        super().__init__()
        self.channels, self.mid, self.deploy = channels, mid, bool(deploy)
        pad = 1 if self.deploy else 0
        # Registration order = the official state-dict order.
        if not self.deploy:
            self.bn1 = nn.BatchNorm2d(channels)
            self.bn2 = nn.BatchNorm2d(mid)
            self.bn3 = nn.BatchNorm2d(channels)
        self.squeeze = nn.Conv2d(channels, mid, 3, padding=pad)
        self.convs = nn.Sequential(*[ERB(mid, ratio, deploy) for _ in range(num_erbs)])
        self.excitate = nn.Conv2d(mid, channels, 3, padding=pad)

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            out = _act(self.squeeze(x))
            out = self.excitate(_act(self.convs(out)))
            return torch.sigmoid(out) * x
        # The border holds the running-statistics shift even in training (as the official
        # code does), so the deployed network sees exactly what training saw.
        out = pad_with(self.bn1(x), bn_scale_shift(self.bn1)[1])
        out = _act(self.squeeze(out))
        out = _act(self.convs(out))
        out = pad_with(self.bn2(out), bn_scale_shift(self.bn2)[1])
        return torch.sigmoid(self.bn3(self.excitate(out))) * x

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the norms (running statistics) into ``squeeze`` / ``excitate``, in place."""
        if self.deploy:
            return
        s1, t1 = bn_scale_shift(self.bn1)
        s2, t2 = bn_scale_shift(self.bn2)
        s3, t3 = bn_scale_shift(self.bn3)
        wq, bq = fold_bn_before(self.squeeze.weight, self.squeeze.bias, s1, t1)
        we, be = fold_bn_before(self.excitate.weight, self.excitate.bias, s2, t2)
        we, be = we * s3.view(-1, 1, 1, 1), be * s3 + t3
        for conv, (w, b) in ((self.squeeze, (wq, bq)), (self.excitate, (we, be))):
            conv.padding = (1, 1)
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        del self.bn1, self.bn2, self.bn3
        self.deploy = True


class FMEN(SRModel):
    """FMEN, training form by default; ``deploy=True`` builds the fused form."""

    arch_id = "fmen"

    def __init__(
        self,
        scale: int = 4,
        num_features: int = 50,
        mid_features: int = 16,
        warmup_mid_features: int = 12,
        up_blocks: Sequence[int] = (2, 1, 1, 1, 1),
        backbone_expand: int = 2,
        attention_expand: int = 2,
        img_range: float = 255.0,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        f = positive_int(self.arch_id, "num_features", num_features)
        m = positive_int(self.arch_id, "mid_features", mid_features)
        mw = positive_int(self.arch_id, "warmup_mid_features", warmup_mid_features)
        ups = [positive_int(self.arch_id, "up_blocks[]", u, minimum=0) for u in up_blocks]
        if not ups:
            raise ConfigError("fmen: up_blocks needs at least the warm-up HFAB's ERB count")
        positive_int(self.arch_id, "backbone_expand", backbone_expand)
        positive_int(self.arch_id, "attention_expand", attention_expand)
        if not float(img_range) > 0:
            raise ConfigError(f"fmen: img_range must be > 0, got {img_range!r}")
        self.scale, self.up_blocks = scale, ups
        self.img_range = float(img_range)
        self.hparams = {
            "scale": scale,
            "num_features": f,
            "mid_features": m,
            "warmup_mid_features": mw,
            "up_blocks": ups,
            "backbone_expand": backbone_expand,
            "attention_expand": attention_expand,
            "img_range": self.img_range,
            "deploy": bool(deploy),
        }
        self.head = nn.Conv2d(3, f, 3, padding=1)
        self.warmup = nn.Sequential(
            nn.Conv2d(f, f, 3, padding=1), HFAB(f, mw, ups[0], attention_expand, deploy)
        )
        n = len(ups) - 1
        self.ERBs = nn.ModuleList([ERB(f, backbone_expand, deploy) for _ in range(n)])
        self.HFABs = nn.ModuleList(
            [HFAB(f, m, ups[i + 1], attention_expand, deploy) for i in range(n)]
        )
        self.lr_conv = nn.Conv2d(f, f, 3, padding=1)
        self.tail = nn.Sequential(
            nn.Conv2d(f, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        x = self.head(x * self.img_range)
        h = self.warmup(x)
        for erb, hfab in zip(self.ERBs, self.HFABs, strict=True):
            h = hfab(erb(h))
        h = self.lr_conv(h) + x
        return self.tail(h) / self.img_range

    def reparameterize(self) -> FMEN:
        """Fuse every RRRB and fold every HFAB norm, in place; outputs unchanged (eval
        mode, fp error only). Afterwards ``hparams["deploy"]`` is True. Returns ``self``."""
        for module in self.modules():
            if isinstance(module, RRRB | HFAB):
                module.reparameterize()
        self.hparams["deploy"] = True
        return self

    def info(self) -> ArchInfo:
        span = through_shuffle(output_block(self.scale), self.scale)
        # tail, lr_conv; per pair an HFAB (squeeze, 2 per ERB, excitate) and an ERB (2);
        # the warm-up HFAB, warmup.0 and head. 1x1 convs and the attention product add none.
        convs = 2 + sum(2 + 2 * u for u in self.up_blocks) + 2 * (len(self.up_blocks) - 1) + 2
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(through_conv(span, convs)),
            # Measured on the published weights: the deployed attention branches reach
            # ~3e7 on natural images (inputs are x255), far past fp16's 65504.
            half_safe=False,
            paper=PAPER,
        )


def fmen(*, scale: int, **overrides: object) -> FMEN:
    """Preset ``fmen``: FMEN-S as published (50 features, 4 ERB/HFAB pairs, widths 16/12)."""
    kw: dict[str, object] = {
        "num_features": 50,
        "mid_features": 16,
        "warmup_mid_features": 12,
        "up_blocks": [2, 1, 1, 1, 1],
    }
    kw.update(overrides)
    return FMEN(scale=scale, **kw)  # type: ignore[arg-type]


# The NTIRE 2022 challenge copy (team03_fmen.py) names the trunk lists differently.
_NTIRE_RULES = (
    (r"basic_blocks\.(.*)", r"ERBs.\1"),
    (r"hfabs\.(.*)", r"HFABs.\1"),
    (r"(.*)", r"\1"),
)


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """FMEN in the training form (``expand_conv`` / ``fea_conv`` / ``reduce_conv`` and batch
    norms) or the deploy form (``rep_conv``), under the official names (``ERBs`` /
    ``HFABs``) or the NTIRE 2022 challenge copy's (``basic_blocks`` / ``hfabs``)."""
    if not {"head.weight", "warmup.1.squeeze.weight", "lr_conv.weight"} <= set(sd):
        return None
    ntire = any(k.startswith(("basic_blocks.", "hfabs.")) for k in sd)
    out, _ = rename(sd, _NTIRE_RULES) if ntire else (dict(sd), [])
    if "warmup.1.bn1.weight" in out:
        deploy = False
    elif any(k.endswith(".rep_conv.weight") for k in out):
        deploy = True
    else:
        return Miss(FMEN.arch_id, "?", "neither batch norms nor rep_conv in warmup.1")
    layout = ("ntire2022-" if ntire else "") + ("deploy" if deploy else "train")
    if "tail.0.weight" not in out:
        return Miss(FMEN.arch_id, layout, "tail.0.weight is missing")
    head = out["head.weight"]
    f, ch = int(head.shape[0]), int(head.shape[1])
    scale = shuffle_scale(int(out["tail.0.weight"].shape[0]), 3)
    if ch != 3 or scale is None:
        return Miss(
            FMEN.arch_id,
            layout,
            f"head.weight {tuple(head.shape)} / tail.0.weight "
            f"{tuple(out['tail.0.weight'].shape)}: not RGB, or no pixel-shuffle scale",
        )
    pairs = indices(out, r"HFABs\.(\d+)\.")
    if pairs != list(range(len(pairs))) or indices(out, r"ERBs\.(\d+)\.") != pairs:
        return Miss(FMEN.arch_id, layout, f"ERBs / HFABs indices differ: {few(map(str, pairs))}")
    ups = [len(indices(out, r"warmup\.1\.convs\.(\d+)\."))]
    ups += [len(indices(out, rf"HFABs\.{i}\.convs\.(\d+)\.")) for i in pairs]
    mw = int(out["warmup.1.squeeze.weight"].shape[0])
    hp: dict[str, object] = {
        "num_features": f,
        "mid_features": int(out["HFABs.0.squeeze.weight"].shape[0]) if pairs else 16,
        "warmup_mid_features": mw,
        "up_blocks": ups,
        "deploy": deploy,
    }
    if not deploy:  # expansion ratios (the deploy form does not keep them)
        trunk = out.get("ERBs.0.conv1.expand_conv.weight")
        branch = out.get("warmup.1.convs.0.conv1.expand_conv.weight")
        if trunk is not None:
            hp["backbone_expand"] = int(trunk.shape[0]) // f
        if branch is not None:
            hp["attention_expand"] = int(branch.shape[0]) // mw
        for key in [k for k in out if k.endswith(".running_var")]:
            tracked = key.removesuffix("running_var") + "num_batches_tracked"
            out.setdefault(tracked, torch.tensor(0))
    return Match(FMEN.arch_id, hp, out, layout, scale)


__all__ = ["ERB", "FMEN", "HFAB", "RRRB", "detect", "fmen", "fuse_rrrb", "pad_with"]
