"""Training losses: pixel losses, their weighted mix and the registry.

``build_loss([{"name": "l1", "weight": 1.0}])(sr, hr, lr) -> (total, parts)``.
See :mod:`sisr.losses.mix` for how to add a loss (perceptual and adversarial go there).
"""

from sisr.losses.mix import LOSSES, LossMix, build_loss
from sisr.losses.pixel import (
    CHARBONNIER_EPS,
    CharbonnierLoss,
    L1Loss,
    L2Loss,
    PixelLoss,
    ResidualL2Loss,
    charbonnier_loss,
    l1_loss,
    l2_loss,
    residual_l2_loss,
)

__all__ = [
    "CHARBONNIER_EPS",
    "LOSSES",
    "CharbonnierLoss",
    "L1Loss",
    "L2Loss",
    "LossMix",
    "PixelLoss",
    "ResidualL2Loss",
    "build_loss",
    "charbonnier_loss",
    "l1_loss",
    "l2_loss",
    "residual_l2_loss",
]
