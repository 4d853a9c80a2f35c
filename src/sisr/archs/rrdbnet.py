"""RRDBNet and the VGG-style discriminator of ESRGAN: Wang, Yu, Wu, Gu, Liu, Dong, Qiao,
Loy, "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks", ECCV Workshops
(PIRM) 2018.

Generator: conv -> ``num_block`` residual-in-residual dense blocks (three 5-conv dense
blocks, each scaled by 0.2 and added back, the triple scaled by 0.2 and added back) -> conv,
with a long skip; then two (nearest x2 upsample -> conv -> LeakyReLU 0.2) stages, a conv +
LeakyReLU and the output conv. No batch norm. That is x4 (x8: three upsampling stages,
``conv_up3``); x2 and x1 follow Real-ESRGAN (Wang et al., ICCVW 2021): the input is
pixel-unshuffled by 2 (3 -> 12 channels, half the size) or 4 (48 channels) and the same x4
trunk runs on it, so inputs need height and width multiples of 2 / 4 (``size_multiple``).
``unshuffle`` overrides that choice (e.g. ``unshuffle=1`` at x2 is an old ESRGAN x2 model
with one upsampling stage).

Parameter names are BasicSR's (``conv_first``, ``body.{i}.rdb{1,2,3}.conv{1..5}``,
``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so BasicSR and
Real-ESRGAN ``params``/``params_ema`` state dicts load directly. The dense-block convs
start as BasicSR does (Kaiming normal times 0.1, zero bias). Input and output are RGB in
[0, 1] with no mean shift, as in BasicSR.

Discriminator (``vgg128``): BasicSR's ``VGGStyleDiscriminator`` with the same names: five
stages of conv3x3 + conv4x4/stride 2 (batch norm after every conv except the first,
LeakyReLU 0.2), 64 -> 512 channels, then Linear(512*4*4, 100) -> LeakyReLU -> Linear(100, 1).
Input must be exactly 128x128 (or 256x256 with ``input_size=256``, one more stage).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs._blocks import phase_radius, positive_int, through_unshuffle
from sisr.archs._common import Span, check_scale, through_conv, through_shuffle
from sisr.archs._detect import Detection, Match, Miss, few, indices, rename
from sisr.archs.base import ArchInfo, Discriminator, SRModel
from sisr.errors import ConfigError

PAPER = (
    "X. Wang, K. Yu, S. Wu, J. Gu, Y. Liu, C. Dong, Y. Qiao, C. C. Loy, ESRGAN: Enhanced "
    "Super-Resolution Generative Adversarial Networks, ECCV Workshops 2018"
)

# x1 last, so that probes that take the first scale pick a super-resolution one.
SCALES: tuple[int, ...] = (2, 4, 8, 1)
# Real-ESRGAN's pixel-unshuffle factor by scale (the trunk always upsamples x4 or more).
_DEFAULT_UNSHUFFLE = {1: 4, 2: 2, 4: 1, 8: 1}


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; ``x + 0.2 * conv5([x, x1..x4])``. (N, F, H, W) -> same."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(f, g, 3, padding=1)
        self.conv2 = nn.Conv2d(f + g, g, 3, padding=1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, padding=1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, padding=1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            # ESRGAN's residual-scaled init: small initial residuals keep a deep
            # un-normalised stack stable at the start of training.
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(SRModel):
    """ESRGAN generator (x4; x2 via pixel unshuffle as in Real-ESRGAN)."""

    arch_id = "rrdbnet"

    def __init__(
        self,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        unshuffle: int | None = None,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "num_feat", num_feat)
        positive_int(self.arch_id, "num_block", num_block, minimum=0)
        positive_int(self.arch_id, "num_grow_ch", num_grow_ch)
        # Pixel unshuffle turns x2 into the x4 problem on a half-size, 12-channel input.
        self.unshuffle = _DEFAULT_UNSHUFFLE[scale] if unshuffle is None else int(unshuffle)
        ups = math.log2(scale * self.unshuffle)
        if self.unshuffle not in (1, 2, 4) or ups != int(ups) or not 1 <= ups <= 4:
            raise ConfigError(
                f"rrdbnet: unshuffle {unshuffle} does not fit scale {scale} "
                "(scale * unshuffle must be 2, 4, 8 or 16)"
            )
        self.num_up = int(ups)
        self.scale = scale
        self.num_block = num_block
        self.hparams = {
            "scale": scale,
            "num_feat": num_feat,
            "num_block": num_block,
            "num_grow_ch": num_grow_ch,
        }
        if unshuffle is not None and self.unshuffle != _DEFAULT_UNSHUFFLE[scale]:
            self.hparams["unshuffle"] = self.unshuffle
        in_ch = 3 * self.unshuffle**2
        self.conv_first = nn.Conv2d(in_ch, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        for i in range(1, self.num_up + 1):
            self.add_module(f"conv_up{i}", nn.Conv2d(num_feat, num_feat, 3, padding=1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped; x2 needs even H and W."""
        if self.unshuffle > 1:
            if x.shape[-2] % self.unshuffle or x.shape[-1] % self.unshuffle:
                raise ConfigError(
                    f"rrdbnet x{self.scale}: input height and width must be multiples of "
                    f"{self.unshuffle}, got {tuple(x.shape[-2:])}"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(1, self.num_up + 1):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = self.lrelu(getattr(self, f"conv_up{i}")(up))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    def _walk(self, span: Span) -> Span:
        """Output span -> LR span, last layer first (see :mod:`sisr.archs._common`)."""
        span = through_conv(span, 2)  # conv_hr, conv_last
        for _ in range(self.num_up):
            span = through_shuffle(through_conv(span, 1), 2)  # conv_upK, nearest x2
        # conv_body + 5 chained convs per dense block, 3 blocks per RRDB, + conv_first
        span = through_conv(span, 1 + 15 * self.num_block + 1)
        if self.unshuffle > 1:
            span = through_unshuffle(span, self.unshuffle)
        return span

    def info(self) -> ArchInfo:
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            # Even and odd LR pixels see different windows after the unshuffle.
            receptive_radius=phase_radius(self._walk, self.scale, period=self.unshuffle),
            size_multiple=self.unshuffle,
            # Real-ESRGAN runs this network in fp16 by default; every block is scaled by
            # 0.2 and inputs are [0, 1], so activations stay far from fp16 limits.
            half_safe=True,
            paper=PAPER,
        )


def rrdbnet(*, scale: int, **overrides: object) -> RRDBNet:
    """Preset ``rrdbnet``: 23 RRDBs, 64 features, growth 32 (ESRGAN, 16.7M params at x4)."""
    kw: dict[str, object] = {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}
    kw.update(overrides)
    return RRDBNet(scale=scale, **kw)  # type: ignore[arg-type]


def _old_arch_rules(sd: Mapping[str, Tensor]) -> list[tuple[str, str]] | str:
    """Rules for the original ESRGAN repo's one ``model`` Sequential, any number of ups.

    model.0 conv_first; model.1.sub.i.RDBj.convk.0 the blocks; model.1.sub.n conv_body;
    then every conv after model.1 in order: the upsampling convs, conv_hr, conv_last
    (the indices between are Upsample / LeakyReLU layers without tensors).
    """
    n = len(indices(sd, r"model\.1\.sub\.(\d+)\.RDB"))
    later = [i for i in indices(sd, r"model\.(\d+)\.weight$") if i > 1]
    if len(later) < 3:
        return "fewer than three convs after the trunk (upsampling, conv_hr, conv_last)"
    rules = [
        (r"model\.0\.(weight|bias)", r"conv_first.\1"),
        (r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", r"body.\1.rdb\2.conv\3.\4"),
        (rf"model\.1\.sub\.{n}\.(weight|bias)", r"conv_body.\1"),
    ]
    for k, i in enumerate(later[:-2], start=1):
        rules.append((rf"model\.{i}\.(weight|bias)", rf"conv_up{k}.\1"))
    rules.append((rf"model\.{later[-2]}\.(weight|bias)", r"conv_hr.\1"))
    rules.append((rf"model\.{later[-1]}\.(weight|bias)", r"conv_last.\1"))
    return rules


# BSRGAN / RealSR naming (RRDB_trunk, trunk_conv, upconvK, HRconv).
_BSRGAN_RULES = [
    (r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)", r"body.\1.rdb\2.conv\3.\4"),
    (r"trunk_conv\.(weight|bias)", r"conv_body.\1"),
    (r"upconv(\d)\.(weight|bias)", r"conv_up\1.\2"),
    (r"HRconv\.(weight|bias)", r"conv_hr.\1"),
    (r"(conv_first|conv_last)\.(weight|bias)", r"\1.\2"),
]


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """RRDBNet in BasicSR / Real-ESRGAN, original ESRGAN ("old arch") or BSRGAN naming.

    num_feat, num_block, num_grow_ch from the shapes; the pixel unshuffle from the first
    conv's input channels (3, 12, 48); the scale from it and the number of upsampling
    convs: scale = 2^ups / unshuffle.
    """
    if "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd:
        layout = "esrgan-old"
        rules = _old_arch_rules(sd)
        if isinstance(rules, str):
            return Miss(RRDBNet.arch_id, layout, rules)
    elif "RRDB_trunk.0.RDB1.conv1.weight" in sd:
        layout, rules = "bsrgan", _BSRGAN_RULES
    elif "conv_first.weight" in sd and "body.0.rdb1.conv1.weight" in sd:
        layout, rules = "basicsr", [(r"(.*)", r"\1")]
    else:
        if any(".conv1x1." in k for k in sd) and "model.0.weight" in sd:
            return Miss(RRDBNet.arch_id, "esrgan-plus", "ESRGAN+ (conv1x1 in the dense blocks)")
        return None
    renamed, left = rename(sd, rules)
    if left:
        return Miss(RRDBNet.arch_id, layout, f"unexpected tensors {few(left)}")
    first, last = renamed.get("conv_first.weight"), renamed.get("conv_last.weight")
    if first is None or last is None or "body.0.rdb1.conv1.weight" not in renamed:
        return Miss(RRDBNet.arch_id, layout, "conv_first, conv_last or the first block is missing")
    in_ch, out_ch = int(first.shape[1]), int(last.shape[0])
    unshuffle = {3: 1, 12: 2, 48: 4}.get(in_ch)
    if out_ch != 3 or unshuffle is None:
        return Miss(
            RRDBNet.arch_id, layout, f"{in_ch} -> {out_ch} channels (sisr runs RGB models only)"
        )
    ups = len(indices(renamed, r"conv_up(\d)\.weight$"))
    scale_f = 2**ups / unshuffle
    if scale_f not in SCALES:
        return Miss(RRDBNet.arch_id, layout, f"{ups} upsampling convs with unshuffle {unshuffle}")
    scale = int(scale_f)
    hp: dict[str, object] = {
        "num_feat": int(first.shape[0]),
        "num_block": len(indices(renamed, r"body\.(\d+)\.rdb1\.conv1\.weight$")),
        "num_grow_ch": int(renamed["body.0.rdb1.conv1.weight"].shape[0]),
    }
    if unshuffle != _DEFAULT_UNSHUFFLE[scale]:
        hp["unshuffle"] = unshuffle
    return Match(RRDBNet.arch_id, hp, renamed, layout, scale)


class VGGStyleDiscriminator(Discriminator):
    """ESRGAN/SRGAN VGG-style discriminator: (N, 3, S, S) -> logits (N, 1), S = input_size."""

    arch_id = "vgg128"

    def __init__(self, in_channels: int = 3, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ConfigError(f"vgg discriminator: input_size must be 128 or 256, got {input_size}")
        positive_int("vgg discriminator", "num_feat", num_feat)
        positive_int("vgg discriminator", "in_channels", in_channels)
        self.input_size = input_size
        self.hparams = {"in_channels": in_channels, "num_feat": num_feat, "input_size": input_size}
        f = num_feat
        widths = [f, 2 * f, 4 * f, 8 * f, 8 * f] + ([8 * f] if input_size == 256 else [])
        self.conv0_0 = nn.Conv2d(in_channels, f, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(f, f, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(f)
        for i in range(1, len(widths)):
            cin, cout = widths[i - 1], widths[i]
            setattr(self, f"conv{i}_0", nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(cout))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout))
        self.num_stages = len(widths)
        # Every stage halves the size: 128 / 2^5 = 256 / 2^6 = 4.
        self.linear1 = nn.Linear(8 * f * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) -> (N, 1) raw logits."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ConfigError(
                f"vgg discriminator: input must be {self.input_size}x{self.input_size} "
                f"(the GT patch size), got {tuple(x.shape[-2:])}"
            )
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.num_stages):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


def vgg128(**overrides: object) -> VGGStyleDiscriminator:
    """Discriminator ``vgg128``: ESRGAN's VGG-style net on 128x128 patches, 64 base features."""
    kw: dict[str, object] = {"in_channels": 3, "num_feat": 64, "input_size": 128}
    kw.update(overrides)
    return VGGStyleDiscriminator(**kw)  # type: ignore[arg-type]


__all__ = [
    "RRDB",
    "RRDBNet",
    "ResidualDenseBlock",
    "VGGStyleDiscriminator",
    "detect",
    "rrdbnet",
    "vgg128",
]
