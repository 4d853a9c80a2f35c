"""EDSR: Lim, Son, Kim, Nah, Lee, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017 (NTIRE 2017 winner).

Head conv -> ``num_blocks`` residual blocks (conv-ReLU-conv, no batch norm, output scaled
by ``res_scale``) -> conv, plus a long skip from the head -> pixel-shuffle upsampler -> conv.
Presets: ``edsr-baseline`` (16 blocks x 64 features, res_scale 1, 1.37M params at x2) and
``edsr`` (32 x 256, res_scale 0.1, 43M at x4). Scale 1 (no upsampler; ``tail.0`` is the
output conv) is the restoration form some projects train.

Value range: the official code (EDSR-PyTorch) works on [0, 255] images and shifts by the
DIV2K mean times ``rgb_range``. This module takes [0, 1] and multiplies by ``rgb_range`` on
the way in and divides on the way out, so with the default ``rgb_range=255`` official
weights load unchanged (the module and parameter names are the official ones: ``sub_mean``,
``add_mean``, ``head.0``, ``body.{i}.body.{0,2}``, ``body.{n}``, ``tail.0.{0,2,..}``,
``tail.1``) and give the official outputs divided by 255.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from sisr.archs._blocks import (
    DIV2K_RGB_MEAN,
    MeanShift,
    add_scaled_residual,
    positive_int,
    rgb_triplet,
    upsampler,
    upsampler_stages,
)
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
)
from sisr.archs._detect import Detection, Match, Miss, few, indices, rename
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, Enhanced Deep Residual Networks for Single "
    "Image Super-Resolution, CVPR Workshops (NTIRE) 2017"
)


# x1 last, so that probes that take the first scale pick a super-resolution one.
SCALES: tuple[int, ...] = (*STANDARD_SCALES, 1)


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))``, no batch norm. (N, F, H, W) -> same."""

    def __init__(self, num_features: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: Tensor) -> Tensor:
        return add_scaled_residual(self.body(x), x, self.res_scale)


class EDSR(SRModel):
    """Single-scale EDSR (the MDSR multi-scale variant is not implemented)."""

    arch_id = "edsr"

    def __init__(
        self,
        scale: int = 4,
        num_blocks: int = 16,
        num_features: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        positive_int(self.arch_id, "num_blocks", num_blocks, minimum=0)
        positive_int(self.arch_id, "num_features", num_features)
        if not float(rgb_range) > 0:
            raise ConfigError(f"edsr: rgb_range must be > 0, got {rgb_range!r}")
        mean = rgb_triplet("edsr: rgb_mean", rgb_mean)
        self.scale = scale
        self.num_blocks = num_blocks
        self.rgb_range = float(rgb_range)
        self.hparams = {
            "scale": scale,
            "num_blocks": num_blocks,
            "num_features": num_features,
            "res_scale": float(res_scale),
            "rgb_range": self.rgb_range,
            "rgb_mean": mean,
        }
        f = num_features
        self.sub_mean = MeanShift(self.rgb_range, mean, sign=-1)
        self.add_mean = MeanShift(self.rgb_range, mean, sign=1)
        self.head = nn.Sequential(nn.Conv2d(3, f, 3, padding=1))
        self.body = nn.Sequential(
            *(ResBlock(f, res_scale) for _ in range(num_blocks)),
            nn.Conv2d(f, f, 3, padding=1),
        )
        if scale == 1:
            self.tail = nn.Sequential(nn.Conv2d(f, 3, 3, padding=1))
        else:
            self.tail = nn.Sequential(upsampler(scale, f), nn.Conv2d(f, 3, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        x = self.body(x) + x
        x = self.add_mean(self.tail(x))
        return x / self.rgb_range

    def info(self) -> ArchInfo:
        # Backwards: last conv on the HR grid, then each upsampler stage (shuffle, conv),
        # then the body (two convs a block plus one) and the head.
        span = through_conv(output_block(self.scale), 1)
        for factor in reversed(upsampler_stages(self.scale) if self.scale > 1 else []):
            span = through_conv(through_shuffle(span, factor), 1)
        span = through_conv(span, 2 * self.num_blocks + 1 + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            # Official weights run at rgb_range 255, so features reach the hundreds; that
            # is far from fp16's 65504 limit and bf16 has fp32's range, so both are safe.
            half_safe=True,
            paper=PAPER,
        )


def edsr_baseline(*, scale: int, **overrides: object) -> EDSR:
    """Preset ``edsr-baseline``: 16 blocks x 64 features, res_scale 1 (1.37M params at x2)."""
    kw: dict[str, object] = {"num_blocks": 16, "num_features": 64, "res_scale": 1.0}
    kw.update(overrides)
    return EDSR(scale=scale, **kw)  # type: ignore[arg-type]


def edsr(*, scale: int, **overrides: object) -> EDSR:
    """Preset ``edsr``: 32 blocks x 256 features, res_scale 0.1 (43M params at x4)."""
    kw: dict[str, object] = {"num_blocks": 32, "num_features": 256, "res_scale": 0.1}
    kw.update(overrides)
    return EDSR(scale=scale, **kw)  # type: ignore[arg-type]


# BasicSR's EDSR names -> the official ones (``{n}``: number of residual blocks).
_BASICSR_RULES = (
    (r"conv_first\.(\w+)", r"head.0.\1"),
    (r"body\.(\d+)\.conv1\.(\w+)", r"body.\1.body.0.\2"),
    (r"body\.(\d+)\.conv2\.(\w+)", r"body.\1.body.2.\2"),
    (r"upsample\.(\d+)\.(\w+)", r"tail.0.\1.\2"),
    (r"conv_last\.(\w+)", r"tail.1.\1"),
)


def _scale_of_tail(sd: Mapping[str, Tensor], f: int) -> int | str:
    """Scale from the upsampler convs ``tail.0.{0,2,..}`` (or x1 without them); or a reason."""
    ups = indices(sd, r"tail\.0\.(\d+)\.weight$")
    if not ups:
        return 1
    outs = [int(sd[f"tail.0.{i}.weight"].shape[0]) for i in ups]
    if outs == [9 * f]:
        return 3
    if all(o == 4 * f for o in outs):
        return 2 ** len(outs)
    return f"upsampler convs with {outs} outputs fit no scale for {f} features"


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """EDSR in the official (EDSR-PyTorch) or BasicSR naming, any scale including 1."""
    layout = "native"
    if "conv_first.weight" in sd and "conv_after_body.weight" in sd:
        layout = "basicsr"
        n = len(indices(sd, r"body\.(\d+)\.conv1\."))
        rules = (*_BASICSR_RULES, (r"conv_after_body\.(\w+)", rf"body.{n}.\1"))
        sd, left = rename(sd, rules)
        if left:
            return Miss(EDSR.arch_id, layout, f"unexpected tensors {few(left)}")
    elif "head.0.weight" not in sd or "body.0.body.0.weight" not in sd:
        return None
    sd = dict(sd)
    if (
        "tail.0.weight" not in sd
        and "tail.1.weight" in sd
        and not any(k.startswith("tail.0.") for k in sd)
    ):
        # Official code at x1: an empty upsampler at tail.0, the output conv at tail.1.
        sd = {("tail.0." + k[7:] if k.startswith("tail.1.") else k): v for k, v in sd.items()}
    head = sd["head.0.weight"]
    if head.dim() != 4 or head.shape[1] != 3 or head.shape[-1] != 3:
        return Miss(EDSR.arch_id, layout, f"head conv {tuple(head.shape)} is not 3x3 from RGB")
    f = int(head.shape[0])
    scale = _scale_of_tail(sd, f)
    if isinstance(scale, str):
        return Miss(EDSR.arch_id, layout, scale)
    blocks = len(indices(sd, r"body\.(\d+)\.body\.0\."))
    mean = list(DIV2K_RGB_MEAN)
    if "sub_mean.bias" in sd:
        # The file's own colour shift (bias = -255 * mean with the default std of 1).
        mean = [round(-float(v) / 255.0, 6) for v in sd["sub_mean.bias"]]
    else:
        shift = {
            "sub_mean": MeanShift(255.0, mean, sign=-1),
            "add_mean": MeanShift(255.0, mean, sign=1),
        }
        for name, mod in shift.items():
            for key, value in mod.state_dict().items():
                sd[f"{name}.{key}"] = value
    res_scale = 0.1 if f >= 256 else 1.0
    return Match(
        EDSR.arch_id,
        {"num_blocks": blocks, "num_features": f, "res_scale": res_scale, "rgb_mean": mean},
        sd,
        layout,
        scale=scale,
        notes=(f"res_scale {res_scale} assumed (the paper's for {f} features)",),
    )


__all__ = ["EDSR", "ResBlock", "detect", "edsr", "edsr_baseline"]
