"""What every super-resolution network in the zoo declares about itself.

Contract for an SR model (subclass of :class:`SRModel`):

* ``forward(x)``: float RGB in [0, 1], shape (N, 3, H, W) -> (N, 3, s*H, s*W)
  with ``s = self.scale``. Models that work on a bicubic-upsampled input (SRCNN,
  VDSR) upsample inside with :mod:`sisr.degrade`. Outputs are not clamped
  (training needs the raw values); callers clamp before quantising.
* ``self.hparams``: the JSON-serialisable keyword arguments of the constructor,
  so ``ARCHS[arch_id](**hparams)`` rebuilds the same network (the weights file
  stores exactly this).
* ``info()``: an :class:`ArchInfo` (may depend on hparams, e.g. depth).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from torch import nn


@dataclass(frozen=True)
class ArchInfo:
    """Static facts about a configured network, used by tiling, precision and listing.

    receptive_radius: how many input (LR) pixels beyond a tile's edge can change
        its output; tiling overlaps tiles by at least this much so that tiled and
        untiled outputs match.
    size_multiple: input height and width must be multiples of this (1 = any);
        inference pads by reflection to the next multiple and crops back.
    half_safe: fp16/bf16 inference is numerically safe (no overflow/NaN seen).
    global_context: empty when tiling is exact; otherwise why it cannot be (attention
        pooled over the whole image, statistics of the whole image, pooling windows tied
        to the image size). ``receptive_radius`` is then the overlap that bounds every
        local path; the rest still depends on the tile, so inference runs whole images
        where it can and says so when it has to split one.
    """

    arch_id: str
    scales: tuple[int, ...]
    receptive_radius: int
    size_multiple: int = 1
    half_safe: bool = True
    paper: str = ""
    global_context: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SRModel(nn.Module):
    """Base class for generators. Subclasses set ``arch_id`` and fill ``hparams``."""

    arch_id: ClassVar[str]
    scale: int
    hparams: dict[str, Any]

    def info(self) -> ArchInfo:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class Discriminator(nn.Module):
    """Base class for GAN discriminators: image batch (N, 3, H, W) -> logits (N, 1)."""

    arch_id: ClassVar[str]
    hparams: dict[str, Any]
