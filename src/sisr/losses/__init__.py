"""Training losses: pixel, perceptual (VGG) and adversarial losses, their weighted mix
and the registry.

``build_loss([{"name": "l1", "weight": 1.0}])(sr, hr, lr) -> (total, parts)``.
See :mod:`sisr.losses.mix` for how to add a loss, :mod:`sisr.losses.perceptual` and
:mod:`sisr.losses.adversarial` for the GAN-training losses (and how a GAN trainer
calls them), :func:`check_loss_requirements` for the start-up check of needed files.
"""

from sisr.losses.adversarial import (
    AdversarialLoss,
    adversarial_d_loss,
    adversarial_g_loss,
    adversarial_term,
    frozen,
)
from sisr.losses.mix import LOSSES, REQUIREMENTS, LossMix, build_loss, check_loss_requirements
from sisr.losses.perceptual import PERCEPTUAL_PRESETS, PerceptualLoss, feature_distance
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
from sisr.losses.vgg import VGGFeatures, resolve_vgg_weights

__all__ = [
    "CHARBONNIER_EPS",
    "LOSSES",
    "PERCEPTUAL_PRESETS",
    "REQUIREMENTS",
    "AdversarialLoss",
    "CharbonnierLoss",
    "L1Loss",
    "L2Loss",
    "LossMix",
    "PerceptualLoss",
    "PixelLoss",
    "ResidualL2Loss",
    "VGGFeatures",
    "adversarial_d_loss",
    "adversarial_g_loss",
    "adversarial_term",
    "build_loss",
    "charbonnier_loss",
    "check_loss_requirements",
    "feature_distance",
    "frozen",
    "l1_loss",
    "l2_loss",
    "residual_l2_loss",
    "resolve_vgg_weights",
]
