"""WDSR: Yu, Fan, Yang, Xu, Wang, Wang, Huang, "Wide Activation for Efficient and Accurate
Image Super-Resolution", arXiv:1808.08718, 2018 (NTIRE 2018 realistic tracks winner).

Two branches added at the end, both upsampled by a single pixel shuffle:

* main: conv3x3 -> ``num_blocks`` wide-activation residual blocks -> conv3x3 to 3*s^2;
* skip: one conv5x5 from the (normalised) input to 3*s^2.

Block A widens before the ReLU: conv3x3 F -> F*e, ReLU, conv3x3 F*e -> F.
Block B adds a linear low-rank bottleneck: conv1x1 F -> F*e, ReLU, conv1x1 F*e ->
int(F*low_rank), conv3x3 -> F. Each block output is scaled by ``res_scale``. Every conv
is weight-normalised (``torch.nn.utils.parametrizations.weight_norm``), no batch norm.

Normalisation follows the official code: on [0, 255] it feeds ``(x - 255*mean) / 127.5``
and returns ``y * 127.5 + 255*mean``, i.e. on [0, 1] ``2 (x - mean)`` in and
``y / 2 + mean`` out. Module names are the official ones (``head.0``,
``body.{i}.body.{0,2[,3]}``, ``tail.0``, ``skip.0``); checkpoints saved with the old
``weight_g`` / ``weight_v`` weight norm load directly (torch converts them on load), and
:func:`detect` reads such a file's variant, widths, depth and scale from its shapes.

Presets (counts include the weight-norm gains): ``wdsr-a`` = 16 blocks, 32 features,
expansion 4 (the official WDSR baseline, 1.19M at x2); ``wdsr-b`` = 32 blocks,
32 features, expansion 6, low rank 0.8 (0.59M at x2). Both take ``num_blocks``,
``num_features``, ``expansion`` ... overrides, e.g. ``wdsr_a(scale=2, num_blocks=32,
expansion=6)`` is the 3.55M model of krasserm/super-resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from sisr.archs._blocks import DIV2K_RGB_MEAN, add_scaled_residual, positive_int, rgb_triplet
from sisr.archs._common import (
    STANDARD_SCALES,
    check_scale,
    output_block,
    radius,
    through_conv,
    through_shuffle,
    union,
)
from sisr.archs._detect import Detection, Match, Miss, few, indices, shuffle_scale
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "J. Yu, Y. Fan, J. Yang, N. Xu, Z. Wang, X. Wang, T. Huang, Wide Activation for "
    "Efficient and Accurate Image Super-Resolution, arXiv:1808.08718, 2018"
)


def wn_conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    """Weight-normalised same-padded conv: weight = g * v / ||v|| (per output channel)."""
    return weight_norm(nn.Conv2d(cin, cout, kernel, padding=kernel // 2))


class BlockA(nn.Module):
    """Wide activation block: x + s * conv3(relu(conv3(x))), F -> F*e -> F."""

    def __init__(self, num_features: int, expansion: float, res_scale: float) -> None:
        super().__init__()
        wide = int(num_features * expansion)
        self.body = nn.Sequential(
            wn_conv(num_features, wide, 3),
            nn.ReLU(inplace=True),
            wn_conv(wide, num_features, 3),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: Tensor) -> Tensor:
        return add_scaled_residual(self.body(x), x, self.res_scale)


class BlockB(nn.Module):
    """Wide + low-rank block: x + s * conv3(conv1(relu(conv1(x)))), F -> F*e -> F*r -> F."""

    def __init__(
        self, num_features: int, expansion: float, low_rank: float, res_scale: float
    ) -> None:
        super().__init__()
        wide = int(num_features * expansion)
        rank = int(num_features * low_rank)
        self.body = nn.Sequential(
            wn_conv(num_features, wide, 1),
            nn.ReLU(inplace=True),
            wn_conv(wide, rank, 1),
            wn_conv(rank, num_features, 3),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: Tensor) -> Tensor:
        return add_scaled_residual(self.body(x), x, self.res_scale)


class _WDSR(SRModel):
    """Shared trunk of WDSR-A and WDSR-B; subclasses choose the block."""

    block_radius: ClassVar[int]  # total conv radius of one residual block

    def __init__(
        self,
        scale: int,
        num_blocks: int,
        num_features: int,
        expansion: float,
        res_scale: float,
        rgb_mean: Sequence[float],
        extra: dict[str, float],
        make_block: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, STANDARD_SCALES)
        positive_int(self.arch_id, "num_blocks", num_blocks, minimum=0)
        positive_int(self.arch_id, "num_features", num_features)
        if not float(expansion) > 0 or int(num_features * float(expansion)) < 1:
            raise ConfigError(f"{self.arch_id}: expansion must be > 0, got {expansion!r}")
        mean = rgb_triplet(f"{self.arch_id}: rgb_mean", rgb_mean)
        self.scale = scale
        self.num_blocks = num_blocks
        self.hparams = {
            "scale": scale,
            "num_blocks": num_blocks,
            "num_features": num_features,
            "expansion": float(expansion),
            **extra,
            "res_scale": float(res_scale),
            "rgb_mean": mean,
        }
        # Not in the state dict: the official checkpoints do not carry it either.
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        out = 3 * scale * scale
        self.head = nn.Sequential(wn_conv(3, num_features, 3))
        self.body = nn.Sequential(*(make_block() for _ in range(num_blocks)))
        self.tail = nn.Sequential(wn_conv(num_features, out, 3), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(wn_conv(3, out, 5), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), unclamped."""
        mean = self.rgb_mean.to(x.dtype)
        x = (x - mean) * 2.0
        s = self.skip(x)
        x = self.tail(self.body(self.head(x)))
        return (x + s) * 0.5 + mean

    def info(self) -> ArchInfo:
        after_shuffle = through_shuffle(output_block(self.scale), self.scale)
        main = through_conv(after_shuffle, 1 + self.block_radius * self.num_blocks + 1)
        skip = through_conv(after_shuffle, 2)
        return ArchInfo(
            arch_id=self.arch_id,
            scales=STANDARD_SCALES,
            receptive_radius=radius(union(main, skip)),
            # Inputs are normalised to about [-1, 1] and weight norm keeps every kernel's
            # norm at its learned gain, so activations stay small: fp16 and bf16 are safe.
            half_safe=True,
            paper=PAPER,
        )


class WDSRA(_WDSR):
    """WDSR-A: wide activation blocks (conv3x3 F -> F*e, ReLU, conv3x3 -> F)."""

    arch_id = "wdsr-a"
    block_radius = 2

    def __init__(
        self,
        scale: int = 2,
        num_blocks: int = 16,
        num_features: int = 32,
        expansion: float = 4.0,
        res_scale: float = 1.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ) -> None:
        super().__init__(
            scale,
            num_blocks,
            num_features,
            expansion,
            res_scale,
            rgb_mean,
            {},
            lambda: BlockA(num_features, float(expansion), float(res_scale)),
        )


class WDSRB(_WDSR):
    """WDSR-B: wide + linear low-rank blocks (1x1 F -> F*e, ReLU, 1x1 -> F*r, 3x3 -> F)."""

    arch_id = "wdsr-b"
    block_radius = 1

    def __init__(
        self,
        scale: int = 2,
        num_blocks: int = 32,
        num_features: int = 32,
        expansion: float = 6.0,
        low_rank: float = 0.8,
        res_scale: float = 1.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ) -> None:
        positive_int(self.arch_id, "num_features", num_features)
        if not float(low_rank) > 0 or int(num_features * float(low_rank)) < 1:
            raise ConfigError(f"wdsr-b: low_rank must give >= 1 channel, got {low_rank!r}")
        super().__init__(
            scale,
            num_blocks,
            num_features,
            expansion,
            res_scale,
            rgb_mean,
            {"low_rank": float(low_rank)},
            lambda: BlockB(num_features, float(expansion), float(low_rank), float(res_scale)),
        )


def wdsr_a(*, scale: int, **overrides: object) -> WDSRA:
    """Preset ``wdsr-a``: 16 blocks, 32 features, expansion 4 (WDSR baseline, 1.19M at x2)."""
    kw: dict[str, object] = {"num_blocks": 16, "num_features": 32, "expansion": 4.0}
    kw.update(overrides)
    return WDSRA(scale=scale, **kw)  # type: ignore[arg-type]


def wdsr_b(*, scale: int, **overrides: object) -> WDSRB:
    """Preset ``wdsr-b``: 32 blocks, 32 features, expansion 6, low rank 0.8 (0.59M at x2)."""
    kw: dict[str, object] = {
        "num_blocks": 32,
        "num_features": 32,
        "expansion": 6.0,
        "low_rank": 0.8,
    }
    kw.update(overrides)
    return WDSRB(scale=scale, **kw)  # type: ignore[arg-type]


_G, _V = "parametrizations.weight.original0", "parametrizations.weight.original1"


def _to_weight_norm(sd: Mapping[str, Tensor]) -> tuple[str, dict[str, Tensor]] | str:
    """(layout, state dict with sisr's weight-norm names) or why the keys do not fit.

    ``official``: the old ``weight_g`` / ``weight_v`` names; ``native``: torch's
    parametrization names; ``plain``: weight norm removed before saving: a plain ``weight``
    ``w`` is ``g * v / ||v||`` with ``v = w`` and ``g = ||w||`` per output channel, exactly.
    """
    out: dict[str, Tensor] = {}
    kinds: set[str] = set()
    for key, value in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "bias":
            out[key] = value
        elif leaf == "weight_g":
            kinds.add("official")
            out[f"{prefix}.{_G}"] = value
        elif leaf == "weight_v":
            out[f"{prefix}.{_V}"] = value
        elif key.endswith((_G, _V)):
            kinds.add("native")
            out[key] = value
        elif leaf == "weight" and value.dim() == 4:
            kinds.add("plain")
            out[f"{prefix}.{_V}"] = value
            out[f"{prefix}.{_G}"] = value.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        else:
            return f"unexpected tensor {key}"
    if len(kinds) != 1:
        return f"weight-norm forms mixed or absent ({', '.join(sorted(kinds)) or 'none'})"
    return kinds.pop(), out


def detect(sd: Mapping[str, Tensor]) -> Detection:
    """WDSR-A or WDSR-B (official names, any weight-norm form): the block type from the
    convs of a block, widths, expansion, low rank, depth and scale from the shapes.

    ``res_scale`` and the colour mean are not in the tensors: the official defaults (1.0,
    the DIV2K mean) are assumed and noted.
    """
    if not all(any(k.startswith(f"{m}.0.") for k in sd) for m in ("head", "tail", "skip")):
        return None
    if not any(k.startswith("body.") for k in sd):
        return None
    found = _to_weight_norm(sd)
    if isinstance(found, str):
        return Miss("wdsr", "?", found)
    layout, out = found
    v = {k.removesuffix(f".{_V}"): t for k, t in out.items() if k.endswith(_V)}
    if (missing := [m for m in ("head.0", "tail.0", "skip.0") if m not in v]) or any(
        t.dim() != 4 for t in v.values()
    ):
        return Miss("wdsr", layout, f"{few(missing) or 'a weight'} missing or not a conv kernel")
    f, ch = int(v["head.0"].shape[0]), int(v["head.0"].shape[1])
    scale = shuffle_scale(int(v["tail.0"].shape[0]), 3)
    if ch != 3 or scale is None or v["skip.0"].shape[:2] != (3 * scale * scale, 3):
        return Miss("wdsr", layout, f"head {ch} channels / tail and skip fit no RGB scale")
    blocks = indices(out, r"body\.(\d+)\.body\.")
    parts = indices(out, r"body\.0\.body\.(\d+)\.") if blocks else []
    hp: dict[str, object] = {"num_blocks": len(blocks), "num_features": f}
    wide = int(v["body.0.body.0"].shape[0]) if blocks else 4 * f
    hp["expansion"] = wide / f
    if parts == [0, 2, 3]:
        arch = WDSRB.arch_id
        rank = int(v["body.0.body.2"].shape[0])
        hp["low_rank"] = rank / f
        if int(f * (rank / f)) != rank:
            return Miss(arch, layout, f"low-rank width {rank} is not int({f} * r) for any r")
    elif parts in ([0, 2], []):
        arch = WDSRA.arch_id
    else:
        return Miss("wdsr", layout, f"block convs body.0.body.{parts} are neither WDSR-A's nor B's")
    if int(f * (wide / f)) != wide:
        return Miss(arch, layout, f"wide width {wide} is not int({f} * e) for any e")
    return Match(
        arch,
        hp,
        out,
        layout,
        scale,
        notes=("res_scale 1.0 and the DIV2K colour mean assumed (the official defaults)",),
    )


__all__ = ["WDSRA", "WDSRB", "BlockA", "BlockB", "detect", "wdsr_a", "wdsr_b"]
