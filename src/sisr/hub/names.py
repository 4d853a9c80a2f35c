"""The table of named weights: ``load_model("edsr-baseline-x2")`` looks names up here.

Every entry is either *shipped* (a ``.safetensors`` file inside the package,
under ``sisr/hub/weights/``) or *downloadable* (URL + SHA-256, fetched into the
cache on first use). Either way the file is a sisr weights file (see
:mod:`sisr.hub.weights`): foreign checkpoints are converted with
``sisr convert`` first, then added here.

``bicubic`` (and ``bicubic-x2`` / ``-x3`` / ``-x4``) is not in the table: it
needs no weights and is built directly by :func:`sisr.hub.load.load_model`.

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
    """One shipped model family: ``<name>-x<scale>`` for each scale, plus ``<name>`` for x2
    when ``alias`` (the built-in ``default``, ``fast`` and ``photo``). ``scores``: the file's measured
    Y-PSNR on Set5, Set14, B100 (its metadata holds the full table)."""

    name: str
    preset: str
    label: str
    sha256: dict[int, str]
    scores: dict[int, tuple[float, float, float]]
    file: str = ""  # with {scale}; default <name>-x{scale}.safetensors
    source: str = ""  # with {scale}; default: the run of tools/gpu/plan.yaml of that name
    alias: bool = False

    def file_for(self, scale: int) -> str:
        return (self.file or f"{self.name}-x{{scale}}.safetensors").format(scale=scale)

    def source_for(self, scale: int) -> str:
        plan = f"trained by sisr on one GPU: tools/gpu/plan.yaml run {self.name}-x{{scale}}"
        return (self.source or plan).format(scale=scale)


# Every family was trained with sisr's own engine (recipes, `sisr train --budget`) on
# T91 + BSD200 + 61 General100 images; each file's metadata holds its recipe, its training
# stages (device, seconds, iterations) and its measured Set5 / Set14 / B100 table.
# ``default``: SPAN at 16 features x 6 blocks (span-t, 47K parameters); ``fast``: ESPCN.
# From the shipped files and their eval JSON (tools/gpu/README.md, "After the calls").
_FAMILIES = (
    _Family(
        "default",
        "span-t",
        "SPAN-t",
        sha256={
            2: "c9ed456f2d699ff65a61eb10087575176edb9e259d7083b17d7de7e263f7f232",
            3: "8c4c1d6506023ecf4491d0dd4d8ff0c5e30617d78c80b6b020abeae49f23cc7c",
            4: "3693918b741c663ee4666c979dbcc890de79cdf4eeeaaf46e45d9b38ad732f3a",
        },
        scores={2: (37.37, 33.0, 31.81), 3: (33.24, 29.55, 28.57), 4: (30.83, 27.75, 27.05)},
        source="trained by sisr: recipes/default_span_x{scale}.yaml, continued on CPU and GPU (tools/gpu/; stages in the file's metadata)",
        alias=True,
    ),
    _Family(
        "photo",
        "span-t",
        "SPAN-t for real photos (second-order degradations)",
        sha256={
            2: "3f6b8fa1d20d7a0c2dbc848046dd507ab04267acc761b7406bc26ebc482f0417",
            4: "7d0bef1640db78a758a9c41ea1644edfaf291cfba9f17ea2cdd4c38f855b16d1",
        },
        scores={2: (36.4, 32.39, 31.33), 4: (30.27, 27.39, 26.77)},
        source="trained by sisr on a CPU: recipes/photo_x{scale}.yaml from default-x{scale} "
        "(55 / 50 min budgets)",
        alias=True,
    ),
    _Family(
        "fast",
        "espcn",
        "ESPCN",
        sha256={
            2: "cfcb23e54d1a93de014d696ce75d718d8e2469bf49ed55de340d2ec1d7d8da85",
            3: "be0d1550d4eefcc6504e8a67b86b96b1fd9b52f15a3fb8b1d25110ca53083b73",
            4: "88abe992b1f9b83f762d12b964d2c7b3cdd1b1894d6acd7e3c45c1346b40fd3f",
        },
        scores={2: (36.14, 32.17, 31.02), 3: (32.35, 29.08, 28.19), 4: (30.11, 27.27, 26.73)},
        file="espcn-x{scale}.safetensors",
        source="trained by sisr on one GPU: tools/gpu/plan.yaml run espcn-x{scale}",
        alias=True,
    ),
    _Family(
        "edsr-baseline",
        "edsr-baseline",
        "EDSR-baseline",
        sha256={
            2: "e9753d7b9f6f4234a90d17eec0dea0f456207b2bec99bb25c3f82ca6ba0ae267",
            3: "83b771487c17acec8ea014594cdf6df42843bdc92aae0032f4cb63443bf89b93",
            4: "ffed6851e5bffdd047a8b26d1cda4758c6e2c1305fdcd34c6e3e700e9f68ddfe",
        },
        scores={2: (37.64, 33.15, 31.93), 3: (33.94, 29.94, 28.87), 4: (31.55, 28.17, 27.31)},
    ),
    _Family(
        "wdsr-a",
        "wdsr-a",
        "WDSR-A",
        sha256={4: "ca9e63b95aeafc7b88eba287592caf9d5d181fc2f95622280b852af6cf6bdb70"},
        scores={4: (31.71, 28.27, 27.39)},
    ),
    _Family(
        "wdsr-b",
        "wdsr-b",
        "WDSR-B",
        sha256={4: "b76c38ba73dcc0d59d6809eee0331b2df3560d455b3ba258a0fd929f574244c2"},
        scores={4: (30.48, 27.56, 26.9)},
    ),
    _Family(
        "srresnet",
        "srresnet",
        "SRResNet (MSE)",
        sha256={4: "0bf47386d925b2f655650af4c6d11b35268720c07e44385d0a8ef04b6429e77b"},
        scores={4: (29.43, 26.81, 26.43)},
    ),
    _Family(
        "srgan",
        "srresnet",
        "SRGAN (VGG16 relu2_2 + adversarial)",
        sha256={4: "9d7e4e445c6e00d9b7cd59d04588bba63acb622379e875ff76b4507ad1d3fc45"},
        scores={4: (29.03, 26.66, 26.3)},
        source="trained by sisr on one GPU: tools/gpu/plan.yaml run srgan-x{scale} (from srresnet-x4)",
    ),
    _Family(
        "dense-fcn",
        "dense-fcn",
        "dense 4x FCN (L2 + high-pass)",
        sha256={4: "dfee2a40c7f4adbc990a49d10d1e78a383bb1bb5c04b10e9bcf332bdc3577351"},
        scores={4: (31.43, 28.17, 27.33)},
    ),
    _Family(
        "fsrcnn",
        "fsrcnn",
        "FSRCNN",
        sha256={
            2: "3fc767bd3e2b0fbac5db2b66ae9deb6552651a5e48b644dab03ea47f13b460a4",
            3: "8b7a4ec9a4ed04bb08e7e47efea416b6c0421ca791eff8382ad07ebedac4aae9",
            4: "4233108cc7cbf150bd0db9723960d1bfdc7c13cf1ae25b3b3e688622f434dab6",
        },
        scores={2: (35.33, 31.6, 30.69), 3: (31.82, 28.69, 27.99), 4: (29.51, 26.82, 26.5)},
    ),
)


def _family_entries(family: _Family) -> list[NamedWeights]:
    entries = []
    for scale, digest in family.sha256.items():
        plain = (family.name,) if scale == 2 and family.alias else ()
        set5, set14, b100 = family.scores[scale]
        scores = f"Set5 / Set14 / B100 {set5:.2f} / {set14:.2f} / {b100:.2f} dB"
        for name in (f"{family.name}-x{scale}", *plain):
            entries.append(
                NamedWeights(
                    name=name,
                    preset=family.preset,
                    scale=scale,
                    description=f"{family.label} x{scale}, {scores}",
                    file=family.file_for(scale),
                    sha256=digest,
                    source=family.source_for(scale),
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
