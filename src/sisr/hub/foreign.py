"""Architectures sisr does not implement: recognise them, and optionally run them via spandrel.

:func:`identify` names the architecture of a state dict from a few characteristic keys
(the same keys spandrel's detectors test), so that a refusal says *what* the file is and
how to run it. With spandrel installed (``pip install "sisr[community]"``; spandrel is
installed with ``--no-deps`` where torchvision is unavailable, see the README),
:func:`load_spandrel` loads such a file through spandrel's own loader and wraps the network
as an :class:`SpandrelModel`, an :class:`~sisr.archs.base.SRModel` that runs through sisr's
:class:`~sisr.infer.Upscaler` (tiling, alpha, 16-bit, ICC, batches).

Tiling with a foreign network: its receptive field is not known exactly (attention
windows, global pooling), so :class:`SpandrelModel` declares a receptive radius of
``FOREIGN_TILE_PAD`` LR pixels; tiled output is then close to, not bitwise equal to, the
untiled one. Use ``--tile 0`` for exact whole-image output, or ``--tile-pad`` to widen it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import WeightsError

# Overlap used when tiling a foreign network (LR pixels): covers 8x8..16x16 attention
# windows with their shifts and most conv stacks; stated, not exact.
FOREIGN_TILE_PAD = 32

INSTALL_HINT = (
    'pip install --no-deps spandrel einops (or pip install "sisr[community]" where '
    "torchvision is available)"
)


@dataclass(frozen=True)
class Foreign:
    """An architecture recognised by its keys but not implemented natively."""

    name: str
    in_spandrel: bool

    def message(self, source: str) -> str:
        if not self.in_spandrel:
            return (
                f"{source}: this is {self.name}, an architecture neither sisr nor spandrel "
                "implements; it cannot be loaded (convert it in its own project, or ask for "
                f"{self.name} in sisr)"
            )
        if spandrel_available():
            return f"{source}: this is {self.name}; spandrel is installed but could not load it"
        return (
            f"{source}: this is {self.name}, which sisr does not implement natively; to run it "
            f"through sisr install the optional backend: {INSTALL_HINT}"
        )


# Characteristic keys (all must be present) -> architecture name; checked in order.
_SIGNATURES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    (
        "HAT",
        ("relative_position_index_SA", "layers.0.residual_group.blocks.0.conv_block.cab.0.weight"),
        True,
    ),
    ("ATD", ("relative_position_index_SA", "layers.0.residual_group.td"), True),
    (
        "Swin2SR",
        (
            "patch_embed.proj.weight",
            "layers.0.residual_group.blocks.0.attn.relative_position_index",
        ),
        True,
    ),
    ("SwinIR", ("layers.0.residual_group.blocks.0.attn.relative_position_index",), True),
    ("RGT", ("before_RG.1.weight", "layers.0.blocks.0.attn.attns.0.rpe_biases"), True),
    ("DAT", ("before_RG.1.weight", "layers.0.blocks.0.ffn.sg.conv.weight"), True),
    ("DRCT", ("layers.0.swin1.attn.relative_position_index",), True),
    ("OmniSR", ("residual_layer.0.residual_layer.0.layer.0.fn.0.weight", "up.0.weight"), True),
    ("RealPLKSR / PLKSR", ("feats.0.weight", "feats.1.refine.weight"), True),
    ("RCAN", ("body.0.body.0.body.3.conv_du.0.weight", "tail.1.weight"), True),
    ("DITN", ("sft.weight", "UFONE.0.ITLs.0.attn.temperature"), True),
    ("MoSR", ("gblocks.0.weight", "gblocks.1.fc1.weight"), True),
    ("GRL", ("norm_start.weight", "norm_end.weight"), True),
)


def identify(sd: Mapping[str, Tensor]) -> Foreign | None:
    """The non-native architecture these keys belong to, if one is known."""
    for name, keys, in_spandrel in _SIGNATURES:
        if all(k in sd for k in keys):
            return Foreign(name, in_spandrel)
    return None


def spandrel_available() -> bool:
    try:
        _import_spandrel()
    except ImportError:
        return False
    return True


def _import_spandrel() -> Any:
    """Import spandrel; if only torchvision is missing, give it the two names it imports.

    spandrel imports ``torchvision.transforms.functional`` at import time for two
    architectures sisr never routes to it (LaMa, RestoreFormer). Where no torchvision
    exists, a stand-in module whose functions raise lets the rest import.
    """
    try:
        import spandrel
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("torchvision"):
            raise
        _install_torchvision_stand_in()
        import spandrel
    return spandrel


def _install_torchvision_stand_in() -> None:
    import enum
    import sys
    import types

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not installed (needed by LaMa / RestoreFormer only)")

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = enum.Enum(  # type: ignore[attr-defined]
        "InterpolationMode", "NEAREST BILINEAR BICUBIC"
    )
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    root.__sisr_stand_in__ = True  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", root)
    sys.modules.setdefault("torchvision.transforms", transforms)
    sys.modules.setdefault("torchvision.transforms.functional", functional)


class SpandrelModel(SRModel):
    """A network spandrel built, behind sisr's model contract (RGB [0, 1] in and out)."""

    arch_id = "spandrel"

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.net = descriptor.model
        self.scale = int(descriptor.scale)
        self.architecture = str(descriptor.architecture.name)
        req = descriptor.size_requirements
        self.multiple = max(int(getattr(req, "multiple_of", 1) or 1), 1)
        self.minimum = int(getattr(req, "minimum", 0) or 0)
        self.half = bool(getattr(descriptor, "supports_half", False))
        if descriptor.input_channels != 3 or descriptor.output_channels != 3:
            raise WeightsError(
                f"{self.architecture}: {descriptor.input_channels} -> "
                f"{descriptor.output_channels} channels; sisr runs RGB models only"
            )
        # Not rebuildable from hparams (ARCHS has no 'spandrel'): saving refuses clearly.
        self.hparams = {"scale": self.scale, "architecture": self.architecture}

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        need_h, need_w = max(h, self.minimum), max(w, self.minimum)
        pad_h, pad_w = (
            (-need_h) % self.multiple + need_h - h,
            (-need_w) % self.multiple + need_w - w,
        )
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        y = self.net(x)
        return y[..., : h * self.scale, : w * self.scale]

    def info(self) -> ArchInfo:
        return ArchInfo(
            arch_id=self.arch_id,
            scales=(self.scale,),
            receptive_radius=FOREIGN_TILE_PAD,
            size_multiple=1,  # padding to the network's multiple happens in forward
            half_safe=self.half,
            paper=f"{self.architecture} (loaded by spandrel)",
        )


def load_spandrel(sd: Mapping[str, Tensor], *, source: str) -> SpandrelModel:
    """Build the network spandrel detects for ``sd`` (WeightsError if it cannot)."""
    try:
        spandrel = _import_spandrel()
    except ImportError as exc:
        raise WeightsError(
            f"{source}: the optional backend is not installed: {INSTALL_HINT}"
        ) from exc
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(dict(sd))
    except Exception as exc:  # spandrel raises its own UnsupportedModelError and others
        reason = str(exc).strip() or f"{type(exc).__name__}, no message"
        if type(exc).__name__ == "UnsupportedModelError":  # raised bare by its registry
            reason = "none of spandrel's detectors matches these keys: a variant it does not know"
        raise WeightsError(f"{source}: spandrel could not load it ({reason})") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise WeightsError(
            f"{source}: spandrel loaded a {type(descriptor).__name__}, not an image model"
        )
    model = SpandrelModel(descriptor)
    return model.eval()  # type: ignore[return-value]


__all__ = [
    "FOREIGN_TILE_PAD",
    "Foreign",
    "SpandrelModel",
    "identify",
    "load_spandrel",
    "spandrel_available",
]
