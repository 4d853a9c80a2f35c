"""x8 self-ensemble (Lim et al., EDSR+; Timofte et al., "Seven ways to improve example-based
single image super resolution"): run the network on the 8 dihedral transforms of the input
(4 rotations, with and without a mirror), undo each transform on the output, average.

Works per tile: every transform maps a pixel's neighbourhood to a neighbourhood of the same
radius, so tiling stays exact with TTA on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def dihedral(x: Tensor, k: int) -> Tensor:
    """The k-th (0..7) dihedral transform of the last two dims: mirror if k >= 4, then
    rotate by (k % 4) quarter turns. (..., H, W) -> (..., H, W) or (..., W, H)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def dihedral_inverse(y: Tensor, k: int) -> Tensor:
    """Undo :func:`dihedral` ``k`` (same shape rules)."""
    y = torch.rot90(y, -(k % 4), dims=(-2, -1))
    if k >= 4:
        y = y.flip(-1)
    return y


def self_ensemble(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Mean over the 8 dihedral transforms of ``fn``. (N, C, h, w) -> fn's output shape.

    Square inputs run the 8 views as one batch of 8N; others as two batches of 4N (the
    views with and without a quarter turn have different shapes).
    """
    n = x.shape[0]
    groups = [list(range(8))] if x.shape[-1] == x.shape[-2] else [[0, 2, 4, 6], [1, 3, 5, 7]]
    acc: Tensor | None = None
    for ks in groups:
        views = torch.cat([dihedral(x, k) for k in ks], dim=0)
        out = fn(views)
        for i, k in enumerate(ks):
            part = dihedral_inverse(out[i * n : (i + 1) * n], k)
            acc = part.clone() if acc is None else acc.add_(part)
    assert acc is not None
    return acc.div_(8)


def with_tta(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``fn`` wrapped in :func:`self_ensemble`."""

    def forward(x: Tensor) -> Tensor:
        return self_ensemble(fn, x)

    return forward


__all__ = ["dihedral", "dihedral_inverse", "self_ensemble", "with_tta"]
