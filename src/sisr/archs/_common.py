"""Small helpers shared by the classic networks: scale checks, bicubic upsampling, and
exact receptive spans.

Receptive spans: a *span* is an inclusive interval ``(lo, hi)`` of pixel indices along
one axis. Starting from the output pixels that belong to LR pixel 0 (``output_block``),
a span is walked backwards through the layer stack (last layer first) to the LR input;
``radius`` of the final span is then how many LR pixels beyond a tile's edge can change
the tile's output. Every step is exact for the layer it models (a conv of radius r, a
pixel shuffle, a transposed conv, MATLAB bicubic upsampling), so the radius is the
tightest bound that holds for every weight setting, not a guess.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

from torch import Tensor

from sisr.errors import ConfigError

Span = tuple[int, int]

# Integer scales the classic networks are built and tested for.
STANDARD_SCALES: tuple[int, ...] = (2, 3, 4, 8)

# MATLAB's cubic kernel is zero at |t| >= 2: an upsampled pixel reads LR taps j with
# |u - j| < 2, where u is its position on the LR grid.
_CUBIC_HALF_WIDTH = 2


def check_scale(arch_id: str, scale: int, scales: Iterable[int]) -> int:
    """Validate ``scale`` against the supported ones; ConfigError naming both otherwise."""
    allowed = tuple(scales)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in allowed:
        raise ConfigError(
            f"{arch_id}: unsupported scale {scale!r}; supported: {', '.join(map(str, allowed))}"
        )
    return scale


def bicubic_upsample(x: Tensor, scale: int) -> Tensor:
    """MATLAB-compatible float bicubic upsampling, differentiable. (..., H, W) -> (..., sH, sW)."""
    from sisr.degrade import imresize

    return imresize(x, scale=scale)


def output_block(scale: int) -> Span:
    """Output pixels (on the s-times grid) that belong to LR pixel 0."""
    return (0, scale - 1)


def through_conv(span: Span, radius: int) -> Span:
    """Back through a stride-1 conv of kernel 2*radius+1 (or a stack of total radius)."""
    return (span[0] - radius, span[1] + radius)


def through_shuffle(span: Span, factor: int) -> Span:
    """Back through a pixel shuffle by ``factor``: fine pixel y comes from coarse y // f."""
    return (span[0] // factor, span[1] // factor)


def through_deconv(span: Span, kernel: int, stride: int, padding: int) -> Span:
    """Back through ConvTranspose2d: output y = i*stride - padding + t, t in [0, kernel)."""
    lo = -((-(span[0] + padding - kernel + 1)) // stride)  # ceil division
    hi = (span[1] + padding) // stride
    return (lo, hi)


def through_bicubic(span: Span, scale: int) -> Span:
    """Back through MATLAB bicubic upsampling by an integer ``scale``.

    Output pixel y (0-based) samples the LR grid at u = (y + 0.5) / s - 0.5 and reads the
    taps j with |u - j| < 2 (the kernel is zero at distance 2).
    """
    u_lo = Fraction(2 * span[0] + 1, 2 * scale) - Fraction(1, 2)
    u_hi = Fraction(2 * span[1] + 1, 2 * scale) - Fraction(1, 2)
    return (
        math.floor(u_lo - _CUBIC_HALF_WIDTH) + 1,
        math.ceil(u_hi + _CUBIC_HALF_WIDTH) - 1,
    )


def union(a: Span, b: Span) -> Span:
    """Smallest span covering both (parallel branches, e.g. a global skip)."""
    return (min(a[0], b[0]), max(a[1], b[1]))


def radius(span: Span) -> int:
    """LR radius of a span taken relative to LR pixel 0."""
    return max(-span[0], span[1], 0)


def pre_upsampling_radius(scale: int, hr_radius: int) -> int:
    """Radius of ``convs(bicubic_upsample(x))`` whose conv stack has ``hr_radius`` HR pixels."""
    return radius(through_bicubic(through_conv(output_block(scale), hr_radius), scale))


def bicubic_radius(scale: int) -> int:
    """Radius of plain MATLAB bicubic upsampling (2 for every integer scale >= 2)."""
    return pre_upsampling_radius(scale, 0)
