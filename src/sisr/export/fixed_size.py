"""Run a graph exported with a fixed input size (``sisr export --static H W``) on inputs
of any size.

Per axis, an input longer than the fixed size is cut into fixed-size windows whose kept
*cores* are at least the receptive radius away from every window edge that is not the
input's own edge; windows at the input's edges sit flush with them. So the network sees
exactly what it would see on the whole input, and the result equals the dynamic graph's
(up to float rounding). A shorter input is padded at its end to the fixed size (reflect,
replicate where the input is too short to reflect) and the output cropped: there the last
``radius`` pixels see padding instead of the network's own border handling, a small
difference at the image edge only (the same padding sisr's tiling uses for size multiples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sisr.export.prepare import ExportError


@dataclass(frozen=True)
class Window:
    """One window on an axis: input ``[start, start + size)``, keeping ``[keep0, keep1)``."""

    start: int
    keep0: int
    keep1: int


def plan_windows(length: int, size: int | None, radius: int, multiple: int = 1) -> list[Window]:
    """Windows of ``size`` covering ``[0, length)`` (``length`` at least ``size`` and a
    multiple of ``multiple``), starting at multiples of ``multiple``; ``size`` None (a
    dynamic axis): the whole axis."""
    if size is None or length <= size:
        return [Window(0, 0, length)]
    m = max(1, multiple)
    if length % m:
        raise ValueError(f"axis length {length} is not a multiple of {m}")
    if size < 2 * radius + m:
        raise ValueError(
            f"fixed size {size} leaves no exact core for receptive radius {radius}; "
            f"export a size of at least {2 * radius + m}"
        )
    out: list[Window] = []
    keep = 0
    while keep < length:
        start = min((keep - radius) // m * m if keep else 0, length - size)
        end = length if start + size >= length else start + size - radius
        out.append(Window(start, keep, end))
        keep = end
    return out


def _padded(length: int, size: int | None, multiple: int) -> int:
    """The axis length windows are planned on: at least ``size``, a multiple of
    ``multiple`` (so that every window start is one); a dynamic axis stays as it is."""
    if size is None:
        return length
    return -(-max(length, size) // multiple) * multiple


def _pad_to(x: Tensor, height: int, width: int) -> Tensor:
    """``x`` padded at the bottom/right to at least ``height`` x ``width``."""
    h, w = x.shape[-2:]
    ph, pw = max(0, height - h), max(0, width - w)
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def run_fixed_size(
    run: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    size: tuple[int | None, int | None],
    batch: int | None,
    scale: int,
    radius: int,
    multiple: int = 1,
    source: str = "model",
) -> Tensor:
    """``run`` (a graph taking ``batch`` x 3 x ``size`` inputs; None = dynamic) applied to
    ``x`` (N, C, H, W) of any size, as described in the module docs."""
    n, c, h, w = x.shape
    sh, sw = size
    m = max(1, multiple)
    ph, pw = _padded(h, sh, m), _padded(w, sw, m)
    xp = _pad_to(x, ph, pw)
    try:
        rows = plan_windows(ph, sh, radius, m)
        cols = plan_windows(pw, sw, radius, m)
    except ValueError as exc:
        raise ExportError(f"{source}: {exc}") from None
    wh, ww = sh or ph, sw or pw
    crops = [
        (r, cc, xp[:, :, r.start : r.start + wh, cc.start : cc.start + ww])
        for r in rows
        for cc in cols
    ]
    out = x.new_empty(n, c, ph * scale, pw * scale)
    items = [(r, cc, i, crop[i : i + 1]) for r, cc, crop in crops for i in range(n)]
    step = batch or n
    for k in range(0, len(items), step):
        chunk = items[k : k + step]
        inp = torch.cat([t for *_, t in chunk])
        if batch is not None and len(chunk) < batch:  # a fixed batch: fill with copies
            inp = torch.cat([inp, inp[-1:].expand(batch - len(chunk), -1, -1, -1)])
        y = run(inp.contiguous())
        if tuple(y.shape[-2:]) != (wh * scale, ww * scale):
            raise ExportError(
                f"{source}: output {tuple(y.shape)} for input {tuple(inp.shape)} is not x{scale}"
            )
        for j, (r, cc, i, _) in enumerate(chunk):
            s = scale
            out[i, :, r.keep0 * s : r.keep1 * s, cc.keep0 * s : cc.keep1 * s] = y[
                j,
                :,
                (r.keep0 - r.start) * s : (r.keep1 - r.start) * s,
                (cc.keep0 - cc.start) * s : (cc.keep1 - cc.start) * s,
            ]
    return out[:, :, : h * scale, : w * scale]


__all__ = ["Window", "plan_windows", "run_fixed_size"]
