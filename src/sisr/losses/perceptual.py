"""Perceptual (VGG feature) losses.

``loss = sum_l w_l * mean(dist(s * phi_l(sr), s * phi_l(hr)))`` where ``phi_l`` are the
frozen ImageNet VGG features at layer ``l`` (:class:`sisr.losses.vgg.VGGFeatures`),
``dist`` is absolute (``l1``) or squared (``l2``) difference, ``s`` the feature
``rescale`` and the mean runs over all N*C*h*w elements. The target's features are
computed without autograd; gradients reach ``sr`` only, never the VGG.

Presets (``{name: perceptual, preset: ...}``; explicit options override them):

* ``johnson``: VGG16 ``relu2_2``, squared error. Johnson et al. 2016's feature
  reconstruction loss for super-resolution (their ``||.||^2 / (C*H*W)`` is this mean).
* ``dense-fcn``: the same layer with the L1 distance, as the dense-FCN article uses it
  (VGG16 assumed, as in Johnson et al. whose loss it adopts).
* ``srgan`` (SRGAN's "VGG54"): VGG19 ``relu5_4``, squared error on feature maps scaled
  by 1/12.75, i.e. the MSE times 1/12.75^2 ~= 0.00615 (the paper's "rescaling factor of
  ~0.006", making the VGG loss comparable to the pixel MSE); ``srgan-vgg22`` is the
  paper's shallower variant on ``relu2_2``.
* ``esrgan``: VGG19 ``conv5_4`` *before* its ReLU (ESRGAN's point: pre-activation
  features keep brightness and sparse texture information), L1 distance.

Weights: torchvision's ImageNet VGG files (see :mod:`sisr.losses.vgg`), resolved when
the loss is built, so a recipe without them fails at start-up with a message naming the
file to download and where to put it. ``--vgg-weights PATH`` reaches the loss as the
``vgg_weights=`` context of :func:`sisr.losses.build_loss` and wins over a recipe's
``weights_path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sisr.errors import ConfigError
from sisr.losses.pixel import PixelLoss, _check_same
from sisr.losses.vgg import VGGFeatures, resolve_vgg_weights

SRGAN_RESCALE = 1.0 / 12.75

PERCEPTUAL_PRESETS: dict[str, dict[str, Any]] = {
    "johnson": {"network": "vgg16", "layers": {"relu2_2": 1.0}, "distance": "l2", "rescale": 1.0},
    "dense-fcn": {
        "network": "vgg16",
        "layers": {"relu2_2": 1.0},
        "distance": "l1",
        "rescale": 1.0,
    },
    "srgan": {
        "network": "vgg19",
        "layers": {"relu5_4": 1.0},
        "distance": "l2",
        "rescale": SRGAN_RESCALE,
    },
    "srgan-vgg22": {
        "network": "vgg19",
        "layers": {"relu2_2": 1.0},
        "distance": "l2",
        "rescale": SRGAN_RESCALE,
    },
    "esrgan": {"network": "vgg19", "layers": {"conv5_4": 1.0}, "distance": "l1", "rescale": 1.0},
}

_DISTANCES = {"l1": "l1", "mae": "l1", "l2": "l2", "mse": "l2"}

LayerSpec = Mapping[str, float] | Sequence[str] | str


def feature_distance(a: Tensor, b: Tensor, distance: str = "l1", rescale: float = 1.0) -> Tensor:
    """Mean L1 or squared distance of ``rescale * a`` and ``rescale * b``.

    a, b: same shape (N, C, h, w) -> 0-dim float32 (computed in float32 even when the
    features come from an autocast region, so fp16 squares cannot overflow).
    """
    _check_same(a, b)
    d = (a.float() - b.float()) * rescale
    return d.abs().mean() if _DISTANCES[distance] == "l1" else d.square().mean()


def _layer_weights(layers: LayerSpec) -> dict[str, float]:
    """``{"relu2_2": 1.0}``, ``["relu2_2", "relu3_3"]`` or ``"relu2_2"`` -> {name: weight}."""
    if isinstance(layers, str):
        items: dict[Any, Any] = {layers: 1.0}
    elif isinstance(layers, Mapping):
        items = dict(layers)
    elif isinstance(layers, Sequence):
        items = {name: 1.0 for name in layers}
    else:
        raise ConfigError(f"perceptual layers: expected a mapping or list, got {layers!r}")
    if not items:
        raise ConfigError("perceptual layers: at least one layer is needed")
    out: dict[str, float] = {}
    for name, w in items.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not w >= 0:
            raise ConfigError(f"perceptual layer {name!r}: weight must be a number >= 0, got {w!r}")
        out[str(name).lower()] = float(w)
    return out


class PerceptualLoss(PixelLoss):
    """VGG feature loss; see the module docstring. Call: ``loss(sr, hr) -> 0-dim Tensor``.

    Args:
        layers: ``{layer: weight}`` (or a list / one name, weight 1 each).
        network: ``"vgg16"`` or ``"vgg19"``.
        distance: ``"l1"`` or ``"l2"`` (``"mse"``) between feature maps.
        weights_path: torchvision-layout VGG file (``.pth``/``.safetensors``); ``None``
            looks in / downloads into the cache (:func:`~sisr.losses.vgg.resolve_vgg_weights`).
        rescale: factor applied to both feature maps before the distance (SRGAN: 1/12.75).
        pretrained: ``False`` keeps randomly initialised VGG weights (tests and
            experiments only: that is not any published loss).
        download: allow downloading the weights into the cache.
        purpose: what the weights are for, in the missing-weights message.

    Raises:
        WeightsError: at construction, when the weights cannot be found or loaded.
        ConfigError: unknown layer, network or distance, or bad weights/rescale.
    """

    def __init__(
        self,
        layers: LayerSpec = "relu2_2",
        network: str = "vgg16",
        distance: str = "l1",
        weights_path: str | Path | None = None,
        rescale: float = 1.0,
        *,
        pretrained: bool = True,
        download: bool = True,
        purpose: str = "loss 'perceptual'",
    ) -> None:
        super().__init__()
        self.layer_weights = _layer_weights(layers)
        dist = _DISTANCES.get(str(distance).lower())
        if dist is None:
            raise ConfigError(f"perceptual distance must be l1 or l2 (mse), got {distance!r}")
        self.distance = dist
        if isinstance(rescale, bool) or not isinstance(rescale, int | float) or not rescale > 0:
            raise ConfigError(f"perceptual rescale must be a number > 0, got {rescale!r}")
        self.rescale = float(rescale)
        path = (
            resolve_vgg_weights(network, weights_path, download=download, purpose=purpose)
            if pretrained
            else None
        )
        self.vgg = VGGFeatures(list(self.layer_weights), network=network, weights=path)
        self.weights_file = str(path) if path is not None else None

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        _check_same(sr, hr)
        with torch.no_grad():
            target = self.vgg(hr)
        feats = self.vgg(sr)
        total: Tensor | None = None
        for name, w in self.layer_weights.items():
            term = feature_distance(feats[name], target[name], self.distance, self.rescale) * w
            total = term if total is None else total + term
        assert total is not None
        return total

    def extra_repr(self) -> str:
        layers = ", ".join(f"{k}*{w:g}" for k, w in self.layer_weights.items())
        return f"{self.vgg.network}[{layers}], distance={self.distance}, rescale={self.rescale:g}"


def _options(
    preset: str | None,
    layers: LayerSpec | None,
    network: str | None,
    distance: str | None,
    rescale: float | None,
) -> dict[str, Any]:
    """Preset defaults (or the class defaults) overridden by explicit options."""
    if preset is None:
        opts: dict[str, Any] = {"network": "vgg16", "layers": "relu2_2", "distance": "l1"}
        opts["rescale"] = 1.0
    else:
        key = str(preset).lower()
        if key not in PERCEPTUAL_PRESETS:
            known = ", ".join(PERCEPTUAL_PRESETS)
            raise ConfigError(f"unknown perceptual preset {preset!r}; known: {known}")
        opts = dict(PERCEPTUAL_PRESETS[key])
    for name, value in (
        ("layers", layers),
        ("network", network),
        ("distance", distance),
        ("rescale", rescale),
    ):
        if value is not None:
            opts[name] = value
    return opts


def _purpose(preset: str | None) -> str:
    return f"loss 'perceptual' (preset {preset})" if preset else "loss 'perceptual'"


def perceptual(
    preset: str | None = None,
    layers: LayerSpec | None = None,
    network: str | None = None,
    distance: str | None = None,
    rescale: float | None = None,
    weights_path: str | Path | None = None,
    vgg_weights: str | Path | None = None,
    pretrained: bool = True,
) -> PerceptualLoss:
    """The ``perceptual`` entry of :data:`sisr.losses.LOSSES`.

    Recipe options: ``preset``, ``layers``, ``network``, ``distance``, ``rescale``,
    ``weights_path``, ``pretrained``. ``vgg_weights`` is the ``--vgg-weights`` path given
    as :func:`~sisr.losses.build_loss` context; it wins over ``weights_path``.
    """
    opts = _options(preset, layers, network, distance, rescale)
    return PerceptualLoss(
        **opts,
        weights_path=vgg_weights if vgg_weights is not None else weights_path,
        pretrained=pretrained,
        purpose=_purpose(preset),
    )


def check_perceptual_requirements(
    preset: str | None = None,
    layers: LayerSpec | None = None,
    network: str | None = None,
    distance: str | None = None,
    rescale: float | None = None,
    weights_path: str | Path | None = None,
    vgg_weights: str | Path | None = None,
    pretrained: bool = True,
) -> None:
    """Start-up check for a ``perceptual`` spec: builds the loss once (resolving, maybe
    downloading, and loading the VGG weights; validating every option) and drops it.
    Same arguments as :func:`perceptual`; raises what it would raise."""
    perceptual(preset, layers, network, distance, rescale, weights_path, vgg_weights, pretrained)


__all__ = [
    "PERCEPTUAL_PRESETS",
    "SRGAN_RESCALE",
    "PerceptualLoss",
    "check_perceptual_requirements",
    "feature_distance",
    "perceptual",
]
