"""Pieces shared by the residual / wide / dense networks (EDSR, WDSR, RRDBNet, SPAN).

* :class:`MeanShift`: the fixed 1x1 colour shift of EDSR-PyTorch, stored as buffers named
  ``weight`` / ``bias`` so official checkpoints (``sub_mean.weight`` ...) load unchanged
  while the optimiser never sees them.
* :func:`upsampler`: EDSR's conv + pixel-shuffle stack (one stage for x3, log2(s) x2 stages
  for powers of two), laid out as ``Sequential(conv, shuffle, conv, shuffle, ...)`` so the
  parameter names are ``tail.0.0``, ``tail.0.2``, ... as in the official code.
* Receptive spans for layers the classic helpers do not model (pixel unshuffle) and the
  phase-aware radius needed when a layer's output depends on the LR pixel's position
  modulo some period (pixel unshuffle by 2 makes even and odd LR pixels differ).
* ESA's frame (:class:`EnhancedSpatialAttention`), its size-robust downsampling
  (:func:`esa_pool`) and its receptive span (:func:`through_esa`), shared by the
  ESA-based efficient networks (RFDN, RLFN, BSRN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sisr.archs._common import Span
from sisr.errors import ConfigError

# DIV2K training-set RGB mean, used by EDSR, WDSR and SPAN (their official code).
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


def rgb_triplet(name: str, value: Sequence[float]) -> list[float]:
    """Validate a 3-vector hparam (a JSON list after a round trip) and return it as a list."""
    vals = [float(v) for v in value]
    if len(vals) != 3:
        raise ConfigError(f"{name} must have 3 values (R, G, B), got {len(vals)}")
    return vals


def positive_int(arch_id: str, name: str, value: object, minimum: int = 1) -> int:
    """An integer hparam >= ``minimum``; ConfigError naming the network otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{arch_id}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def add_scaled_residual(res: Tensor, x: Tensor, res_scale: float) -> Tensor:
    """``x + res_scale * res`` for (N, C, H, W) maps, written into ``res``.

    ``res`` must be a fresh conv output not saved for backward (true for a block's last
    conv), so the in-place add is autograd-safe and saves one feature map per block.
    """
    if res_scale != 1.0:
        res = res * res_scale
    return res.add_(x)


class MeanShift(nn.Module):
    """Per-channel affine shift ``y = x / std + sign * rgb_range * mean / std``.

    Same maths as EDSR-PyTorch's ``MeanShift`` (a frozen 1x1 conv), kept as a 1x1 conv with
    buffers so the state-dict keys and values match the official checkpoints exactly.
    Shapes: (N, 3, H, W) -> (N, 3, H, W).
    """

    weight: Tensor
    bias: Tensor

    def __init__(
        self,
        rgb_range: float,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        rgb_std: Sequence[float] = (1.0, 1.0, 1.0),
        sign: int = -1,
    ) -> None:
        super().__init__()
        std = torch.tensor(list(rgb_std), dtype=torch.float32)
        mean = torch.tensor(list(rgb_mean), dtype=torch.float32)
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
        self.register_buffer("bias", sign * rgb_range * mean / std)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def upsampler(scale: int, num_features: int) -> nn.Sequential:
    """EDSR upsampler: (N, F, H, W) -> (N, F, sH, sW) by conv3x3 + pixel shuffle stages.

    Powers of two use log2(s) stages of x2 (4F channels each); 3 uses one x3 stage.
    """
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(num_features, 4 * num_features, 3, padding=1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_features, 9 * num_features, 3, padding=1), nn.PixelShuffle(3)]
    else:  # pragma: no cover - callers validate the scale first
        raise ConfigError(f"upsampler: unsupported scale {scale}")
    return nn.Sequential(*layers)


def upsampler_stages(scale: int) -> list[int]:
    """Shuffle factor of each :func:`upsampler` stage, input side first ([2, 2] for x4)."""
    if scale & (scale - 1) == 0:
        return [2] * (scale.bit_length() - 1)
    return [scale]


def through_unshuffle(span: Span, factor: int) -> Span:
    """Back through a pixel *unshuffle* by ``factor``: coarse u holds fine f*u .. f*u+f-1."""
    return (span[0] * factor, span[1] * factor + factor - 1)


def phase_radius(walk: Callable[[Span], Span], scale: int, period: int = 1) -> int:
    """Receptive radius of a layer stack, worst case over the LR pixel's phase.

    ``walk`` maps the output span of one LR pixel back to an LR span. For each LR pixel
    p in ``range(period)`` (the stack is shift-invariant by ``period`` LR pixels) the
    output block ``[s*p, s*p + s - 1]`` is walked back and the radius taken relative to p.
    """
    worst = 0
    for p in range(period):
        lo, hi = walk((scale * p, scale * p + scale - 1))
        worst = max(worst, p - lo, hi - p)
    return worst


# --- ESA (enhanced spatial attention; Liu et al., RFANet, CVPR 2020), as RFDN, RLFN and
# BSRN use it: a 3x3 stride-2 unpadded conv, a 7x7 stride-3 max pool, convs on the pooled
# map, bilinear upsampling back to the input size, a 1x1 conv and a sigmoid mask.
ESA_KERNEL, ESA_POOL, ESA_POOL_STRIDE = 3, 7, 3
# Smallest side the official ESA runs on: the strided conv must leave the pool's 7 pixels.
ESA_MIN_SIZE = ESA_KERNEL + 2 * (ESA_POOL - 1)


def esa_pool(
    x: Tensor, strided: Callable[[Tensor], Tensor], replicate_to: int = ESA_KERNEL
) -> Tensor:
    """ESA's downsampling ``max_pool2d(strided(x), 7, stride=3)``: (N, C, H, W) -> (N, C, P, Q).

    ``strided`` is the 3x3 stride-2 unpadded conv. The official code fails on maps under
    15 pixels; here a map under ``replicate_to`` pixels is edge-padded (bottom / right) to
    that size before the conv, and a strided map under 7 pixels has the pool window
    clipped to it (padding with -inf), so any size runs and maps of 15 pixels or more
    give exactly the official result. ``replicate_to`` is 3 (RLFN, BSRN) or
    :data:`ESA_MIN_SIZE` (RFDN: the pooled branch then sees the padded whole map).
    """
    h, w = x.shape[-2:]
    if h < replicate_to or w < replicate_to:
        pad = (0, max(0, replicate_to - w), 0, max(0, replicate_to - h))
        x = nn.functional.pad(x, pad, mode="replicate")
    c = strided(x)
    h, w = c.shape[-2:]
    if h < ESA_POOL or w < ESA_POOL:
        pad = (0, max(0, ESA_POOL - w), 0, max(0, ESA_POOL - h))
        c = nn.functional.pad(c, pad, value=float("-inf"))
    return nn.functional.max_pool2d(c, ESA_POOL, stride=ESA_POOL_STRIDE)


class EnhancedSpatialAttention(nn.Module):
    """ESA's frame, (N, F, H, W) -> (N, F, H, W), ``c = conv1(x)``:
    ``x * sigmoid(conv4(up(pooled(esa_pool(c, conv2))) + conv_f(c)))``, ``up`` bilinear
    back to the input size.

    Subclasses create ``conv1``, ``conv_f``, ``conv2``, ``conv4`` and the convs on the
    pooled map (in their official order: it is the state dict's) and define
    :meth:`pooled`; ``replicate_to`` is passed to :func:`esa_pool`.
    """

    conv1: nn.Module
    conv_f: nn.Module
    conv2: nn.Module
    conv4: nn.Module
    replicate_to = ESA_KERNEL

    def pooled(self, low: Tensor) -> Tensor:
        """The convs on the pooled map, (N, E, P, Q) -> (N, E, P, Q)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        c1 = self.conv1(x)
        low = self.pooled(esa_pool(c1, self.conv2, self.replicate_to))
        up = nn.functional.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(up + self.conv_f(c1)))


def through_esa(span: Span, pooled_convs: int) -> Span:
    """Back through an ESA mask whose pooled map passes ``pooled_convs`` 3x3 convs.

    Pooled cell k covers input pixels 6k .. 6k + 14 (stride 2 x 3, window 3 + 2 * 6). The
    mask at pixel y reads cells floor(u) and floor(u) + 1, u = (y + 0.5) P / H - 0.5, and
    each pooled conv widens that by one cell. P / H is a little under 1/6 (6P >= H - 15),
    which shifts cells towards the image's end by under 15 pixels. So y reads pixels
    y - 23 - 6c .. y + 17 + 6c on any map of 15 pixels or more. ESA is not strictly
    local -- the grid depends on the map size, so a tile's mask is close to, not equal
    to, the whole image's -- and this bounds which pixels' *values* reach y.
    """
    reach = 6 * pooled_convs
    return (span[0] - 23 - reach, span[1] + 17 + reach)


__all__ = [
    "DIV2K_RGB_MEAN",
    "ESA_KERNEL",
    "ESA_MIN_SIZE",
    "ESA_POOL",
    "ESA_POOL_STRIDE",
    "EnhancedSpatialAttention",
    "MeanShift",
    "esa_pool",
    "phase_radius",
    "positive_int",
    "rgb_triplet",
    "through_esa",
    "through_unshuffle",
    "upsampler",
    "upsampler_stages",
]
