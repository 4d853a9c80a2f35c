"""Pixel losses: pure functions plus thin ``nn.Module`` wrappers.

Every function takes batches of the same shape (N, C, H, W) (any shape works for
the elementwise ones) and returns a 0-dim tensor: the mean over all elements.
Every module has the uniform signature ``forward(sr, hr, lr=None) -> Tensor`` so
that :class:`sisr.losses.mix.LossMix` can call them interchangeably.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sisr.errors import ConfigError

CHARBONNIER_EPS = 1e-3


def _check_same(sr: Tensor, hr: Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"loss inputs differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")


def l1_loss(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean absolute error. sr, hr: same shape -> 0-dim."""
    _check_same(sr, hr)
    return (sr - hr).abs().mean()


def l2_loss(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean squared error. sr, hr: same shape -> 0-dim."""
    _check_same(sr, hr)
    return (sr - hr).square().mean()


def charbonnier_loss(sr: Tensor, hr: Tensor, eps: float = CHARBONNIER_EPS) -> Tensor:
    """Charbonnier (smooth L1): mean of sqrt((sr - hr)^2 + eps^2). sr, hr: same shape -> 0-dim.

    ``eps`` is the distance below which the loss turns quadratic (LapSRN uses 1e-3 on
    [0, 1] images); a perfect prediction therefore scores ``eps``, not 0.
    """
    _check_same(sr, hr)
    return torch.sqrt((sr - hr).square() + eps * eps).mean()


def bicubic_upsample(lr: Tensor, size: tuple[int, int]) -> Tensor:
    """MATLAB-bicubic upsampling of a batch. lr: (N, C, h, w) float -> (N, C, *size)."""
    from sisr.degrade import imresize  # lazy: keeps `import sisr.losses` light

    return imresize(lr, size=size)


def residual_l2_loss(sr: Tensor, hr: Tensor, lr: Tensor, residual: Tensor | None = None) -> Tensor:
    """L2 on the high-pass residual (VDSR-style). sr, hr: (N, C, H, W); lr: (N, C, h, w).

    target = hr - up(lr); prediction = ``residual`` when the model exposes its raw
    residual, else sr - up(lr), where up is MATLAB bicubic to (H, W). When the
    prediction is formed from ``sr`` the upsampled term cancels in exact arithmetic,
    so the value equals :func:`l2_loss` (sr, hr) up to float rounding; the loss only
    differs when the model's own residual is supplied (e.g. a model that does not
    add exactly this bicubic upsample to its residual).
    """
    _check_same(sr, hr)
    if lr.dim() != 4 or hr.dim() != 4 or lr.shape[:2] != hr.shape[:2]:
        raise ValueError(
            f"residual loss needs (N, C, H, W) batches, got lr {tuple(lr.shape)} "
            f"and hr {tuple(hr.shape)}"
        )
    up = bicubic_upsample(lr.to(hr.dtype), (hr.shape[-2], hr.shape[-1]))
    target = hr - up
    pred = residual if residual is not None else sr - up
    _check_same(pred, target)
    return (pred - target).square().mean()


class PixelLoss(nn.Module):
    """Base for losses called as ``loss(sr, hr, lr) -> 0-dim Tensor``.

    ``needs_lr`` tells the mixer which losses require the LR batch.
    """

    needs_lr: bool = False

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        raise NotImplementedError


class L1Loss(PixelLoss):
    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return l1_loss(sr, hr)


class L2Loss(PixelLoss):
    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return l2_loss(sr, hr)


class CharbonnierLoss(PixelLoss):
    def __init__(self, eps: float = CHARBONNIER_EPS) -> None:
        super().__init__()
        if not eps > 0:
            raise ConfigError(f"charbonnier eps must be > 0, got {eps!r}")
        self.eps = float(eps)

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return charbonnier_loss(sr, hr, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class ResidualL2Loss(PixelLoss):
    """See :func:`residual_l2_loss`; ``residual`` may be passed as a keyword."""

    needs_lr = True

    def forward(
        self,
        sr: Tensor,
        hr: Tensor,
        lr: Tensor | None = None,
        residual: Tensor | None = None,
    ) -> Tensor:
        if lr is None:
            raise ValueError("the residual loss needs the LR batch")
        return residual_l2_loss(sr, hr, lr, residual)
