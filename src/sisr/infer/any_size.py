"""Any output size: a factor (1.5, 3.2, 8), a width, a height or a longest side.

Networks are trained at integer scales. For any other target the network runs at the
smallest trained scale that reaches it (x2 for 1.5, x4 for 3.2), or in passes when no single
scale does (x8 with x2/x3/x4 weights: x4 then x2), and an antialiased MATLAB-bicubic resize
then gives the exact size. Alpha, 16-bit and gray go through the same passes as with an
integer scale; the dpi grows with the size, so the printed size is kept.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sisr.errors import ConfigError

__all__ = ["MAX_FACTOR", "AnySize", "Target", "plan_passes", "resize_exact"]

MAX_FACTOR = 16.0  # beyond this an "upscale" is a typo, and the output would not fit anyway
_MAX_PASSES = 3


@dataclass(frozen=True)
class Target:
    """The size asked for: ``factor`` alone, or any of ``width`` / ``height`` / ``max_side``
    (the aspect ratio is kept; with several, the output fits all of them)."""

    factor: float | None = None
    width: int | None = None
    height: int | None = None
    max_side: int | None = None

    def check(self) -> Target:
        sides = {"--width": self.width, "--height": self.height, "--max-side": self.max_side}
        given = {k: v for k, v in sides.items() if v is not None}
        if self.factor is not None and given:
            raise ConfigError(f"give a scale or {', '.join(given)}, not both")
        if self.factor is None and not given:
            raise ConfigError("no output size: give a scale, --width, --height or --max-side")
        if self.factor is not None and not (
            math.isfinite(self.factor) and 1.0 <= self.factor <= MAX_FACTOR
        ):
            raise ConfigError(f"scale must be between 1 and {MAX_FACTOR:g}, got {self.factor:g}")
        for flag, v in given.items():
            if not 1 <= v <= 1 << 17:
                raise ConfigError(f"{flag} must be between 1 and {1 << 17}, got {v}")
        return self

    def size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the output for an input of ``height`` x ``width``."""
        # The side that sets the factor comes out exact (w * (W / w) rounds to W), the other
        # follows the aspect ratio.
        f = self.factor_for(height, width)
        return max(1, round(height * f)), max(1, round(width * f))

    def factor_for(self, height: int, width: int) -> float:
        if self.factor is not None:
            return float(self.factor)
        limits = []
        if self.width is not None:
            limits.append(self.width / width)
        if self.height is not None:
            limits.append(self.height / height)
        if self.max_side is not None:
            limits.append(self.max_side / max(height, width))
        f = min(limits)
        if f < 1.0:
            raise ConfigError(
                f"the {width}x{height} image is already larger than the size asked for "
                f"({self.describe()}); sisr upscale does not shrink images"
            )
        if f > MAX_FACTOR:
            raise ConfigError(
                f"{self.describe()} is x{f:.1f} for a {width}x{height} image, more than "
                f"x{MAX_FACTOR:g}"
            )
        return f

    def tag(self) -> str:
        """A file-name part: ``x1.5``, ``w1920``, ``w1920-h1080``, ``m2000``."""
        if self.factor is not None:
            return f"x{self.factor:g}"
        parts = (("w", self.width), ("h", self.height), ("m", self.max_side))
        return "-".join(f"{k}{v}" for k, v in parts if v is not None)

    def describe(self) -> str:
        if self.factor is not None:
            return f"x{self.factor:g}"
        parts = [
            f"{name} {v}"
            for name, v in (
                ("width", self.width),
                ("height", self.height),
                ("max side", self.max_side),
            )
            if v is not None
        ]
        return ", ".join(parts)


def plan_passes(factor: float, scales: Sequence[int]) -> tuple[int, ...]:
    """The network passes for ``factor``. With x2 weights: x2 first while the factor is
    above 2, then the smallest scale that reaches what is left (``2.5`` -> ``(2, 2)``,
    ``8`` -> ``(2, 4)``, ``1.5`` -> ``(2,)``); x2 is the strongest network of a family, and
    ``benchmarks/any_size.py`` measured this way best on Set14 for 1.5, 2.5 and 8 (the
    default family: +0.1 to +0.2 dB over one x3 or x4 pass). Without x2: the fewest passes,
    then the smallest product."""
    options = sorted({int(s) for s in scales if int(s) >= 2})
    if not options:
        raise ConfigError("no network scale to plan with")
    if 2 in options:
        seq = _x2_first(float(factor), options)
        if len(seq) <= _MAX_PASSES:
            return seq
    for n in range(1, _MAX_PASSES + 1):
        found = [
            seq
            for seq in itertools.combinations_with_replacement(options[::-1], n)
            if math.prod(seq) >= factor - 1e-9
        ]
        if found:
            return min(found, key=lambda seq: (math.prod(seq), seq[::-1]))
    raise ConfigError(f"x{factor:g} needs more than {_MAX_PASSES} passes of x{max(options)}")


def _x2_first(factor: float, options: list[int]) -> tuple[int, ...]:
    if factor <= 2 + 1e-9:
        return (2,)
    reach = [s for s in options if s >= factor / 2 - 1e-9]
    return (2, reach[0]) if reach else (2, *_x2_first(factor / 2, options))


def resize_exact(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxW or HxWxC (uint8 / uint16 / float in [0, 1]) -> ``size``, MATLAB bicubic with
    antialiasing (a downscale does not alias), rounded back to the input's integer type."""
    if arr.shape[:2] == tuple(size):
        return arr
    from sisr.degrade.bicubic import imresize

    x = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)
    x = x[..., None] if x.dim() == 2 else x
    y = imresize(x.permute(2, 0, 1), size=size).permute(1, 2, 0)
    if np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max)
        y = y.round_().clamp_(0, top)
    else:
        y = y.clamp_(0, 1)
    out = y.numpy().astype(arr.dtype)
    return out[..., 0] if arr.ndim == 2 else out


class AnySize:
    """Upscale to a :class:`Target` with the Upscalers of one model family.

    ``get(scale)`` gives the :class:`~sisr.infer.Upscaler` of a trained scale (loaded when
    first needed); ``scales`` lists the scales there are. Offers the interface batch jobs
    use (:meth:`tile_count`, :meth:`upscale_arrays`, :meth:`output_meta`).
    """

    def __init__(
        self,
        get: Callable[[int], Any],
        scales: Sequence[int],
        target: Target,
        *,
        max_output_pixels: int | None = None,
    ) -> None:
        self.target = target.check()
        self.max_output_pixels = max_output_pixels
        self.scales = sorted({int(s) for s in scales})
        self._get = get
        self._loaded: dict[int, Any] = {}
        if target.factor is not None:
            plan_passes(target.factor, self.scales)  # an impossible factor fails now

    def upscaler(self, scale: int) -> Any:
        if scale not in self._loaded:
            self._loaded[scale] = self._get(scale)
        return self._loaded[scale]

    def passes(self, height: int, width: int) -> tuple[int, ...]:
        """The network passes for an input of this size (the output size checked first)."""
        out_h, out_w = self.target.size(height, width)
        if self.max_output_pixels is not None and out_h * out_w > self.max_output_pixels:
            raise ConfigError(
                f"{self.target.describe()} makes a {out_w}x{out_h} output of a {width}x{height} "
                f"image, above the limit of {self.max_output_pixels:,} pixels"
            )
        return plan_passes(self.target.factor_for(height, width), self.scales)

    def __repr__(self) -> str:
        loaded = ", ".join(repr(u) for u in self._loaded.values()) or "none loaded yet"
        return f"AnySize({self.target.describe()}, trained scales {self.scales}: {loaded})"

    def tile_count(self, height: int, width: int, **kwargs: Any) -> int:
        total, h, w = 0, height, width
        for s in self.passes(height, width):
            total += self.upscaler(s).tile_count(h, w, **kwargs)
            h, w = h * s, w * s
        return total

    def upscale_arrays(
        self, color: np.ndarray, alpha: np.ndarray | None = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`Upscaler.upscale_arrays`, to the target size."""
        h, w = color.shape[:2]
        out = self.target.size(h, w)
        for s in self.passes(h, w):
            color, alpha = self.upscaler(s).upscale_arrays(color, alpha, **kwargs)
        color = resize_exact(color, out)
        alpha = None if alpha is None else resize_exact(alpha, out)
        return color, alpha

    def upscale_file(
        self, src: str | os.PathLike[str], dst: str | os.PathLike[str], **options: Any
    ) -> Path:
        """As :meth:`Upscaler.upscale_file`, to the target size."""
        from sisr.infer.upscaler import upscale_file

        return upscale_file(self, src, dst, **options)

    def output_meta(self, meta: Any) -> Any:
        """dpi grows with the size on each axis (the printed size is kept)."""
        if meta.dpi is None:
            return meta
        out_h, out_w = self.target.size(meta.height, meta.width)
        return replace(
            meta, dpi=(meta.dpi[0] * out_w / meta.width, meta.dpi[1] * out_h / meta.height)
        )
