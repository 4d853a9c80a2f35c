"""The model zoo: an explicit registry of every architecture and named preset.

``ARCHS`` maps an architecture id to its class (used to rebuild a model from a
weights file's metadata); ``PRESETS`` maps a preset name to a small factory
``preset(scale=..., **overrides) -> SRModel`` (as timm does);
``DISCRIMINATORS`` likewise for GAN discriminators. Nothing is discovered by
scanning: adding a network means importing it here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sisr.archs.base import ArchInfo, Discriminator, SRModel

ARCHS: dict[str, type[SRModel]] = {}
PRESETS: dict[str, Callable[..., SRModel]] = {}
DISCRIMINATORS: dict[str, Callable[..., Discriminator]] = {}

# --- classic small networks ---------------------------------------------------
# (filled in below by explicit imports)

# --- residual / wide / dense networks -------------------------------------------
# (filled in below by explicit imports)


def build(name: str, scale: int, **overrides: Any) -> SRModel:
    """Build a preset (``edsr-baseline``) or an architecture id with hparams."""
    if name in PRESETS:
        return PRESETS[name](scale=scale, **overrides)
    if name in ARCHS:
        return ARCHS[name](scale=scale, **overrides)
    known = ", ".join(sorted(PRESETS))
    from sisr.errors import ConfigError

    raise ConfigError(f"unknown model {name!r}; known presets: {known}")


__all__ = ["ARCHS", "DISCRIMINATORS", "PRESETS", "ArchInfo", "Discriminator", "SRModel", "build"]
