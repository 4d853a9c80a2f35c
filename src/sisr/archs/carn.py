"""CARN and CARN-M: Ahn, Kang, Sohn, "Fast, Accurate, and Lightweight Super-Resolution
with Cascading Residual Network", ECCV 2018.

Structure (names as in the official code, nmhkahn/CARN-pytorch, so its files load unchanged):

* ``sub_mean.shifter`` / ``add_mean.shifter``: a fixed 1x1 conv subtracting (adding) the
  DIV2K RGB mean, on [0, 1] images;
* ``entry``: conv3x3 3 -> F;
* cascading: at both levels the same pattern. Starting from ``c0 = o0 = x``, unit ``k``
  maps ``o_{k-1}`` to ``b_k``, ``c_k = [c_{k-1}, b_k]`` (channel concatenation) and
  ``o_k = relu(conv1x1_k(c_k))`` (``(k+1)F -> F``); the output is the last ``o``. The
  network cascades ``b1 .. b3`` (cascading blocks) with ``c1 .. c3``; each cascading block
  cascades its residual units with its own ``c1 .. c3``;
* residual unit (CARN): ``relu(x + conv3x3(relu(conv3x3(x))))``; *efficient* residual unit
  (CARN-M): ``relu(x + conv1x1(relu(gconv3x3(relu(gconv3x3(x))))))`` with group convs;
  CARN-M also *shares* one unit (``b1``) across the three positions of a cascading block;
* ``upsample``: conv3x3 (F -> 4F, or 9F for x3; grouped in CARN-M) + ReLU + pixel shuffle
  per stage (x4: two x2 stages, x8: three); ``exit``: conv3x3 F -> 3.

The published files are *multi-scale*: one network trained at x2, x3 and x4 at once,
holding three upsamplers (``upsample.up2`` / ``up3`` / ``up4``). With
``multi_scale=True`` sisr keeps all three, so such a file loads strictly, and runs the one
for ``scale``; ``multi_scale=False`` has one upsampler (``upsample.up``), as the official
code's single-scale training builds it. Presets: ``carn`` (1.59M parameters with the three
upsamplers) and ``carn-m`` (efficient shared units, groups of 4; 0.41M).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sisr.archs._blocks import (
    DIV2K_RGB_MEAN,
    MeanShift,
    positive_int,
    rgb_triplet,
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
from sisr.archs._detect import Detection, Match, Miss, few, indices
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "N. Ahn, B. Kang, K.-A. Sohn, Fast, Accurate, and Lightweight Super-Resolution with "
    "Cascading Residual Network, ECCV 2018"
)
# The multi-scale form holds exactly these upsamplers; the single-scale one also builds x8.
MULTI_SCALES: tuple[int, ...] = (2, 3, 4)


def cascade(x: Tensor, units: Sequence[nn.Module], fusions: Sequence[nn.Module]) -> Tensor:
    """The cascading connection: (N, F, H, W) -> (N, F, H, W).

    ``c = x; o = x``; for each (unit, fusion): ``c = cat(c, unit(o)); o = fusion(c)``, so
    fusion ``k`` (1-based) sees ``(k + 1) F`` channels: every earlier output, not just the
    last one.
    """
    concat = out = x
    for unit, fuse in zip(units, fusions, strict=True):
        concat = torch.cat([concat, unit(out)], 1)
        out = fuse(concat)
    return out


class Shift(nn.Module):
    """The official ``MeanShift`` wrapper: a fixed 1x1 conv held as ``shifter``.

    Its tensors are buffers (``shifter.weight`` / ``shifter.bias``): loaded from and saved
    to files like the official ones, never trained (the official code freezes them).
    """

    def __init__(self, rgb_mean: Sequence[float], sign: int) -> None:
        super().__init__()
        self.shifter = MeanShift(1.0, rgb_mean, sign=sign)

    def forward(self, x: Tensor) -> Tensor:
        return self.shifter(x)


class Fusion(nn.Module):
    """``relu(conv1x1(x))``, (N, C_in, H, W) -> (N, C_out, H, W) (official ``BasicBlock``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ResidualUnit(nn.Module):
    """``relu(x + conv3x3(relu(conv3x3(x))))``. (N, F, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + x)


class EfficientResidualUnit(nn.Module):
    """``relu(x + conv1x1(relu(gconv3x3(relu(gconv3x3(x))))))`` with ``groups`` groups.

    (N, F, H, W) -> same; about ``2 / groups`` of a residual unit's weights.
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """``num_units`` residual units (``b1 ..``, or ``b1`` alone when ``shared``) cascaded
    with the 1x1 fusions ``c1 ..``. (N, F, H, W) -> same."""

    def __init__(
        self, channels: int, num_units: int, efficient: bool, shared: bool, groups: int
    ) -> None:
        super().__init__()
        self.num_units, self.shared = num_units, shared

        def unit() -> nn.Module:
            return EfficientResidualUnit(channels, groups) if efficient else ResidualUnit(channels)

        for k in range(1, (1 if shared else num_units) + 1):
            self.add_module(f"b{k}", unit())
        for k in range(1, num_units + 1):
            self.add_module(f"c{k}", Fusion((k + 1) * channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        n = self.num_units
        units = [getattr(self, "b1" if self.shared else f"b{k}") for k in range(1, n + 1)]
        return cascade(x, units, [getattr(self, f"c{k}") for k in range(1, n + 1)])


class Upsampler(nn.Module):
    """(N, F, H, W) -> (N, F, sH, sW): ``body`` = [conv3x3 (F -> f^2 F), ReLU, shuffle(f)]
    per stage (x3: one x3 stage; powers of two: x2 stages), convs with ``groups`` groups."""

    def __init__(self, channels: int, scale: int, groups: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for f in upsampler_stages(scale):
            layers += [
                nn.Conv2d(channels, f * f * channels, 3, padding=1, groups=groups),
                nn.ReLU(inplace=True),
                nn.PixelShuffle(f),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class CARN(SRModel):
    """Cascading residual network; CARN-M with ``efficient``, ``shared`` and ``groups=4``."""

    arch_id = "carn"

    def __init__(
        self,
        scale: int = 4,
        num_features: int = 64,
        num_blocks: int = 3,
        num_units: int = 3,
        efficient: bool = False,
        shared: bool = False,
        groups: int = 1,
        multi_scale: bool = False,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ) -> None:
        super().__init__()
        self.multi_scale = bool(multi_scale)
        check_scale(self.arch_id, scale, self._scales())
        positive_int(self.arch_id, "num_features", num_features)
        positive_int(self.arch_id, "num_blocks", num_blocks)
        positive_int(self.arch_id, "num_units", num_units)
        positive_int(self.arch_id, "groups", groups)
        if num_features % groups:
            raise ConfigError(
                f"carn: groups={groups} must divide num_features={num_features} (group convs)"
            )
        mean = rgb_triplet("carn: rgb_mean", rgb_mean)
        self.scale = scale
        self.num_blocks, self.num_units = num_blocks, num_units
        self.hparams = {
            "scale": scale,
            "num_features": num_features,
            "num_blocks": num_blocks,
            "num_units": num_units,
            "efficient": bool(efficient),
            "shared": bool(shared),
            "groups": groups,
            "multi_scale": self.multi_scale,
            "rgb_mean": mean,
        }
        f = num_features
        self.sub_mean = Shift(mean, sign=-1)
        self.add_mean = Shift(mean, sign=1)
        self.entry = nn.Conv2d(3, f, 3, padding=1)
        for k in range(1, num_blocks + 1):
            self.add_module(
                f"b{k}", CascadingBlock(f, num_units, bool(efficient), bool(shared), groups)
            )
        for k in range(1, num_blocks + 1):
            self.add_module(f"c{k}", Fusion((k + 1) * f, f))
        self.upsample = nn.Module()
        if self.multi_scale:
            for s in MULTI_SCALES:
                self.upsample.add_module(f"up{s}", Upsampler(f, s, groups))
        else:
            self.upsample.add_module("up", Upsampler(f, scale, groups))
        self.exit = nn.Conv2d(f, 3, 3, padding=1)

    def _scales(self) -> tuple[int, ...]:
        return MULTI_SCALES if self.multi_scale else STANDARD_SCALES

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        n = self.num_blocks
        out = self.entry(self.sub_mean(x))
        blocks = [getattr(self, f"b{k}") for k in range(1, n + 1)]
        out = cascade(out, blocks, [getattr(self, f"c{k}") for k in range(1, n + 1)])
        up = getattr(self.upsample, f"up{self.scale}" if self.multi_scale else "up")
        return self.add_mean(self.exit(up(out)))

    def info(self) -> ArchInfo:
        span = through_conv(output_block(self.scale), 1)  # exit
        for factor in reversed(upsampler_stages(self.scale)):
            span = through_conv(through_shuffle(span, factor), 1)
        # Longest chain: every unit of every block (two 3x3 convs each), then entry.
        span = through_conv(span, 2 * self.num_blocks * self.num_units + 1)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=self._scales(),
            receptive_radius=radius(span),
            # [0, 1] inputs and ReLU-bounded residual units: features stay small.
            half_safe=True,
            paper=PAPER,
        )


def carn(*, scale: int, **overrides: Any) -> CARN:
    """Preset ``carn``: 64 features, 3 cascading blocks of 3 residual units."""
    kw: dict[str, Any] = {"num_features": 64, "num_blocks": 3, "num_units": 3}
    kw.update(overrides)
    return CARN(scale=scale, **kw)


def carn_m(*, scale: int, **overrides: Any) -> CARN:
    """Preset ``carn-m``: CARN with efficient residual units (group convs of 4, one unit
    shared within each cascading block) and grouped upsampler convs."""
    kw: dict[str, Any] = {
        "num_features": 64,
        "num_blocks": 3,
        "num_units": 3,
        "efficient": True,
        "shared": True,
        "groups": 4,
    }
    kw.update(overrides)
    return CARN(scale=scale, **kw)


def _groups(channels: int, weight: Tensor) -> int | None:
    """Groups of a conv with ``channels`` inputs from its weight (O, C/g, kh, kw)."""
    per = int(weight.shape[1])
    return channels // per if per and channels % per == 0 else None


def _single_scale(sd: Mapping[str, Tensor], f: int) -> int | str:
    """Scale from the upsampler convs ``upsample.up.body.{0,3,..}``, or a reason."""
    convs = indices(sd, r"upsample\.up\.body\.(\d+)\.weight$")
    outs = [int(sd[f"upsample.up.body.{i}.weight"].shape[0]) for i in convs]
    if outs == [9 * f]:
        return 3
    if outs and all(o == 4 * f for o in outs):
        return 2 ** len(outs)
    return f"upsampler convs with {outs} outputs fit no scale for {f} features"


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """The official CARN / CARN-M layout, multi-scale (``upsample.up2/3/4``) or single-scale
    (``upsample.up``). A multi-scale file fixes no scale: the caller picks x2, x3 or x4."""
    if "entry.weight" not in sd or "b1.c1.body.0.weight" not in sd:
        return None
    layout = "official"
    entry = sd["entry.weight"]
    if entry.dim() != 4 or entry.shape[1] != 3 or "exit.weight" not in sd:
        return Miss(CARN.arch_id, layout, f"entry {tuple(entry.shape)} is not RGB, or no exit")
    f = int(entry.shape[0])
    multi = "upsample.up2.body.0.weight" in sd
    up_first = sd.get("upsample.up2.body.0.weight" if multi else "upsample.up.body.0.weight")
    if up_first is None:
        return Miss(CARN.arch_id, layout, "no upsampler (upsample.up or upsample.up2/3/4)")
    groups = _groups(f, up_first)
    first_unit = sd.get("b1.b1.body.0.weight")
    if first_unit is None:
        return Miss(CARN.arch_id, layout, "b1.b1.body.0.weight (first residual unit) is missing")
    if groups is None:
        return Miss(
            CARN.arch_id, layout, f"upsampler conv {tuple(up_first.shape)} for {f} features"
        )
    efficient = "b1.b1.body.4.weight" in sd
    if efficient and _groups(f, first_unit) != groups:
        return Miss(
            CARN.arch_id,
            layout,
            f"residual-unit conv {tuple(first_unit.shape)} and upsampler conv "
            f"{tuple(up_first.shape)} have different groups",
        )
    num_units = len(indices(sd, r"b1\.c(\d+)\.body\.0\.weight$"))
    stored_units = len(indices(sd, r"b1\.b(\d+)\.body\.0\.weight$"))
    hp: dict[str, Any] = {
        "num_features": f,
        "num_blocks": len(indices(sd, r"b(\d+)\.c1\.body\.0\.weight$")),
        "num_units": num_units,
        "efficient": efficient,
        "shared": stored_units == 1 and num_units > 1,
        "groups": groups,
        "multi_scale": multi,
    }
    out = dict(sd)
    if "sub_mean.shifter.bias" in sd:
        # The file's own shift (bias = -mean on [0, 1] images); the tensors load as stored.
        hp["rgb_mean"] = [round(-float(v), 6) for v in sd["sub_mean.shifter.bias"]]
    else:
        for name, sign in (("sub_mean", -1), ("add_mean", 1)):
            for key, value in Shift(DIV2K_RGB_MEAN, sign).state_dict().items():
                out[f"{name}.{key}"] = value
    notes: tuple[str, ...] = ()
    if multi:
        if extra := [s for s in (3, 4) if f"upsample.up{s}.body.0.weight" not in sd]:
            return Miss(CARN.arch_id, layout, f"multi-scale file without upsample.up{extra[0]}")
        scale: int | None = None
        notes = ("a multi-scale file: x2, x3 and x4 upsamplers, the scale picks one",)
    else:
        found = _single_scale(sd, f)
        if isinstance(found, str):
            return Miss(CARN.arch_id, layout, found)
        scale = found
    if stray := [k for k in sd if k.startswith("upsample.") and ".body." not in k]:
        return Miss(CARN.arch_id, layout, f"unexpected tensors {few(stray)}")
    return Match(CARN.arch_id, hp, out, layout, scale, notes)


__all__ = [
    "CARN",
    "CascadingBlock",
    "EfficientResidualUnit",
    "ResidualUnit",
    "Upsampler",
    "carn",
    "carn_m",
    "cascade",
    "detect",
]
