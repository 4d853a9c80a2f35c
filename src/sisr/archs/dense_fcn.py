"""Dense fully-convolutional x4 network (2017 article on super-resolving individual images).

Layer stack as the article describes it (input 64x64x3 -> output 256x256x3 in the paper;
fully convolutional, so any input size works):

* CBL: conv 5x5 -> 64, BatchNorm, LeakyReLU(0.1);
* Dense-14: a 14-layer DenseNet block without bottlenecks; every layer is
  BN-LeakyReLU(0.1)-conv3x3 with growth rate 32 on the concatenation of the block input and
  all earlier layers' outputs; the block hands only the last layer's 32 channels on (as the
  up-path of FC-DenseNet does);
* two UP-convs (transposed conv 3x3, "stride 1/2": ``ConvTranspose2d(k=3, stride=2,
  padding=1, output_padding=1)``, which doubles H and W exactly) to 64 channels, each
  followed by BN and LeakyReLU(0.1) like every other layer of the article (the article does
  not spell this out; it changes the count by 256 parameters);
* CBL: conv 5x5 -> 3, BN, LeakyReLU(0.1) (leaky, so negative residuals stay reachable).

Parameter count (trainable, BN affine included): head 4,992; dense block 1,104,768 (convs
on 64, 96, ..., 480 input channels); up-convs 18,624 + 37,056; tail 4,809; total 1,170,249,
the article's "1.17M".

``residual=True`` is the article's high-frequency formulation: the network predicts
HR - bicubic(LR). ``forward_residual(x)`` returns the raw network output and
``residual_target(lr, hr)`` the matching target, so a trainer can apply its loss to the
residual; ``forward(x)`` always returns the image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sisr.archs._common import (
    bicubic_upsample,
    check_scale,
    output_block,
    radius,
    through_bicubic,
    through_conv,
    through_deconv,
    union,
)
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import ConfigError

PAPER = (
    "Dense fully-convolutional 4x super-resolution network with a 14-layer DenseNet block "
    "and two up-convolutions, optionally on the bicubic high-frequency residual (2017)"
)
SCALES = (4,)
_SLOPE = 0.1


def _cbl(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """Conv-BN-LeakyReLU(0.1), same size. (N, cin, H, W) -> (N, cout, H, W)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(_SLOPE, inplace=True),
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    """Transposed conv 3x3, stride 2 (exact x2), BN, LeakyReLU.

    (N, cin, H, W) -> (N, cout, 2H, 2W).
    """
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(_SLOPE, inplace=True),
    )


class DenseLayer(nn.Module):
    """BN-LeakyReLU-conv3x3 (pre-activation DenseNet layer). (N, cin, H, W) -> (N, growth, H, W)."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.act = nn.LeakyReLU(_SLOPE)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(self.norm(x)))


class DenseBlock(nn.Module):
    """``layers`` dense layers; returns only the last layer's ``growth`` channels.

    (N, cin, H, W) -> (N, growth, H, W).
    """

    def __init__(self, cin: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        out = x
        for layer in self.layers:
            out = layer(torch.cat(feats, dim=1) if len(feats) > 1 else feats[0])
            feats.append(out)
        return out


class DenseFCN(SRModel):
    """Dense fully-convolutional x4 network, optionally predicting the bicubic residual."""

    arch_id = "dense-fcn"

    def __init__(
        self,
        scale: int = 4,
        residual: bool = False,
        features: int = 64,
        growth: int = 32,
        layers: int = 14,
    ) -> None:
        super().__init__()
        check_scale(self.arch_id, scale, SCALES)
        if features < 1 or growth < 1 or layers < 1:
            raise ConfigError(
                f"dense-fcn: need features, growth, layers >= 1, got {features}, {growth}, {layers}"
            )
        self.scale = scale
        self.residual = bool(residual)
        self.layers = layers
        self.hparams = {
            "scale": scale,
            "residual": self.residual,
            "features": features,
            "growth": growth,
            "layers": layers,
        }
        self.head = _cbl(3, features, 5)
        self.dense = DenseBlock(features, growth, layers)
        self.up = nn.Sequential(_up(growth, features), _up(features, features))
        self.tail = _cbl(features, 3, 5)

    def forward_residual(self, x: Tensor) -> Tensor:
        """Raw network output (the residual when ``residual``). (N, 3, H, W) -> (N, 3, 4H, 4W)."""
        return self.tail(self.up(self.dense(self.head(x))))

    def residual_target(self, lr: Tensor, hr: Tensor) -> Tensor:
        """What :meth:`forward_residual` should predict: HR - bicubic(LR), or HR itself.

        lr (N, 3, H, W), hr (N, 3, 4H, 4W) -> (N, 3, 4H, 4W).
        """
        if not self.residual:
            return hr
        return hr - bicubic_upsample(lr, self.scale)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, 3, 4H, 4W)."""
        out = self.forward_residual(x)
        if self.residual:
            out = out + bicubic_upsample(x, self.scale)
        return out

    def info(self) -> ArchInfo:
        block = output_block(self.scale)
        span = through_conv(block, 2)  # 5x5 tail
        span = through_deconv(span, 3, 2, 1)
        span = through_deconv(span, 3, 2, 1)
        span = through_conv(span, self.layers + 2)  # dense 3x3s, 5x5 head
        if self.residual:
            span = union(span, through_bicubic(block, self.scale))
        return ArchInfo(
            arch_id=self.arch_id,
            scales=SCALES,
            receptive_radius=radius(span),
            paper=PAPER,
        )


def dense_fcn(*, scale: int = 4, **overrides: Any) -> DenseFCN:
    """Preset ``dense-fcn``: Dense-14, growth 32, 64 features, x4 only."""
    kw: dict[str, Any] = {"features": 64, "growth": 32, "layers": 14}
    kw.update(overrides)
    return DenseFCN(scale=scale, **kw)


__all__ = ["DenseBlock", "DenseFCN", "DenseLayer", "dense_fcn"]
