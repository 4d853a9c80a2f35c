"""The table of named weights: ``load_model("edsr-baseline-x2")`` looks names up here.

Every entry is either *shipped* (a ``.safetensors`` file inside the package,
under ``sisr/hub/weights/``) or *downloadable* (URL + SHA-256, fetched into the
cache on first use). Either way the file is a sisr weights file (see
:mod:`sisr.hub.weights`): foreign checkpoints are converted with
``sisr convert`` first, then added here.

``bicubic`` (and ``bicubic-x2`` / ``-x3`` / ``-x4``) is not in the table: it
needs no weights and is built directly by :func:`sisr.hub.weights.load_model`.

Adding an entry: put the file in ``src/sisr/hub/weights/`` (or upload it), then
add a :class:`NamedWeights` line below with its SHA-256 (``sha256sum FILE``).
The tests check that every shipped entry exists, hashes to its SHA-256 and
loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BICUBIC_NAME = re.compile(r"^bicubic(?:-x(\d+))?$")


@dataclass(frozen=True)
class NamedWeights:
    """One named weights file.

    name: the public name (``edsr-baseline-x2``).
    preset: the :data:`sisr.archs.PRESETS` name it instantiates (for listing).
    scale: upscaling factor of the weights.
    file: file name under ``sisr/hub/weights/`` when shipped in the package.
    url / sha256: where to download it otherwise (sha256 is required with url).
    description / source / license: shown by ``sisr models`` and docs.
    """

    name: str
    preset: str
    scale: int
    description: str = ""
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    source: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        if (self.file is None) == (self.url is None):
            raise ValueError(f"named weights {self.name!r}: give exactly one of file= or url=")
        if self.url is not None and not self.sha256:
            raise ValueError(f"named weights {self.name!r}: a URL needs its sha256")


def _table(*entries: NamedWeights) -> dict[str, NamedWeights]:
    table: dict[str, NamedWeights] = {}
    for entry in entries:
        if entry.name in table:
            raise ValueError(f"duplicate named weights {entry.name!r}")
        table[entry.name] = entry
    return table


@dataclass(frozen=True)
class _Family:
    """One shipped model family: ``<name>-x2/-x3/-x4`` plus ``<name>`` for x2."""

    name: str
    preset: str
    label: str
    file: str  # with {scale}
    recipe: str  # with {scale}
    sha256: dict[int, str]
    set5: dict[int, str]


# The built-in families, both trained with sisr's own engine on T91 + BSD200 on a 2-core
# CPU (x3/x4 warm-started from x2). ``default``: SPAN at 16 features x 6 blocks (span-t,
# 47K parameters); ``fast``: the previous default, ESPCN. Set5 Y-PSNR in each description.
_FAMILIES = (
    _Family(
        name="default",
        preset="span-t",
        label="SPAN-t",
        file="default-x{scale}.safetensors",
        recipe="recipes/default_span_x{scale}.yaml",
        sha256={
            2: "f79b083521e89a61e766bbb546f84e886b9ea56ddb8577896ab04401d22efd4f",
            3: "09371d946f2cf032459ed77e1089e3cf23666c642446e504d8aa616703b68f26",
            4: "435b0235db18a9e883a2dcd1f8013bc72c6e503ae1db640767838a500178092f",
        },
        set5={
            2: "36.97 dB (bicubic 33.66)",
            3: "32.38 dB (bicubic 30.39)",
            4: "30.02 dB (bicubic 28.42)",
        },
    ),
    _Family(
        name="fast",
        preset="espcn",
        label="ESPCN",
        file="espcn-x{scale}.safetensors",
        recipe="recipes/default_espcn_x{scale}.yaml",
        sha256={
            2: "b2c482a6d9bfbcdfcf08518247bd45b85949c5199d2dbf1653c314573af693aa",
            3: "b93a479276067f919319e50cb3011779bf421cc2c81abf7e0e62b1d9d82b360c",
            4: "ef3f74ab8d4d192b7b665bcd6d9001e13af92347ac4d0575096fb7e719465ffd",
        },
        set5={
            2: "35.04 dB (bicubic 33.66)",
            3: "31.25 dB (bicubic 30.39)",
            4: "29.21 dB (bicubic 28.42)",
        },
    ),
)


def _family_entries(family: _Family) -> list[NamedWeights]:
    entries = []
    for scale, digest in family.sha256.items():
        plain = (family.name,) if scale == 2 else ()
        for name in (f"{family.name}-x{scale}", *plain):
            entries.append(
                NamedWeights(
                    name=name,
                    preset=family.preset,
                    scale=scale,
                    description=(f"built-in {family.label} x{scale}, Set5 {family.set5[scale]}"),
                    file=family.file.format(scale=scale),
                    sha256=digest,
                    source=f"trained by sisr: {family.recipe.format(scale=scale)}",
                    license="Apache-2.0",
                )
            )
    return entries


# Explicit, reviewed list (no discovery); see the module docstring for how to add one.
WEIGHTS: dict[str, NamedWeights] = _table(*(e for f in _FAMILIES for e in _family_entries(f)))


def shipped_dir() -> Path:
    """Folder holding the weights shipped inside the package."""
    return Path(str(resources.files("sisr") / "hub" / "weights"))


def shipped_path(entry: NamedWeights) -> Path | None:
    """The packaged file of a shipped entry (``None`` for download-only entries)."""
    return shipped_dir() / entry.file if entry.file is not None else None


def known_names() -> list[str]:
    """Every name ``load_model`` accepts besides file paths."""
    return sorted([*WEIGHTS, "bicubic", "bicubic-x2", "bicubic-x3", "bicubic-x4"])


def weights_for_preset(preset: str) -> list[NamedWeights]:
    """Named weights that instantiate ``preset``, sorted by scale."""
    return sorted((w for w in WEIGHTS.values() if w.preset == preset), key=lambda w: w.scale)


__all__ = [
    "BICUBIC_NAME",
    "WEIGHTS",
    "NamedWeights",
    "known_names",
    "shipped_dir",
    "shipped_path",
    "weights_for_preset",
]
