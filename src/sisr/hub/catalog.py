"""The catalogue of published weights sisr knows by name (``realesrgan-x4plus``, ...).

``catalog.json`` (shipped in the package) holds, for each widely used published weight
file, the facts taken from OpenModelDB: download URL(s), byte size, SHA-256, licence,
architecture (OpenModelDB's spelling, and the sisr architecture that runs it natively, if
any), scale and tags. ``sisr models --catalog`` lists it; ``sisr upscale -n NAME`` /
``sisr.load(NAME)`` download the file on first use into ``cache_dir()/weights`` with a
progress bar, check size and SHA-256, write atomically (see :mod:`sisr.hub.download`),
then load it by architecture detection.

Offline (or with ``SISR_OFFLINE=1``) a missing file fails at once with the URL and the
exact path to put the file at by hand; a file placed there is verified like a download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from sisr.errors import DownloadError, WeightsError

# Attempts per URL: one retry covers a dropped connection mid-transfer; a failed
# attempt leaves nothing in the cache, so the retry starts clean.
ATTEMPTS = 2


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    author: str
    license: str
    architecture: str  # OpenModelDB's name (esrgan, compact, span, swinir, ...)
    sisr_arch: str | None  # the sisr architecture that runs it natively, or None
    scale: int
    bytes: int
    sha256: str
    file_type: str
    urls: tuple[str, ...]
    tags: tuple[str, ...] = ()
    size_hints: tuple[str, ...] = ()
    openmodeldb_id: str = ""
    # Y-PSNR the authors publish for this file (paper or README), by benchmark set; and
    # where the facts come from (repository@commit path) when not from OpenModelDB.
    published_psnr: dict[str, float] = field(default_factory=dict)
    measured_psnr: dict[str, float] = field(default_factory=dict)  # `sisr eval`, paper protocol
    source: str = ""
    note: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.file_type}"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _entry(raw: dict[str, Any]) -> CatalogEntry:
    return CatalogEntry(
        name=str(raw["name"]),
        title=str(raw.get("title", "")),
        author=str(raw.get("author", "")),
        license=str(raw.get("license", "")),
        architecture=str(raw["architecture"]),
        sisr_arch=raw.get("sisr_arch"),
        scale=int(raw["scale"]),
        bytes=int(raw["bytes"]),
        sha256=str(raw["sha256"]).lower(),
        file_type=str(raw.get("file_type", "pth")),
        urls=tuple(raw["urls"]),
        tags=tuple(raw.get("tags") or ()),
        size_hints=tuple(raw.get("size_hints") or ()),
        openmodeldb_id=str(raw.get("openmodeldb_id", "")),
        published_psnr={str(k): float(v) for k, v in (raw.get("published_psnr") or {}).items()},
        measured_psnr={str(k): float(v) for k, v in (raw.get("measured_psnr") or {}).items()},
        source=str(raw.get("source", "")),
        note=str(raw.get("note", "")),
    )


@cache
def catalog() -> dict[str, CatalogEntry]:
    """Short name -> entry, from the packaged ``catalog.json``."""
    text = (resources.files("sisr") / "hub" / "catalog.json").read_text(encoding="utf-8")
    entries = [_entry(m) for m in json.loads(text)["models"]]
    table = {e.name: e for e in entries}
    if len(table) != len(entries):
        raise ValueError("duplicate names in sisr/hub/catalog.json")
    return table


def weights_dir() -> Path:
    from sisr.hub.download import cache_dir

    return cache_dir() / "weights"


def _by_hand(entry: CatalogEntry, target: Path) -> str:
    return (
        f"download {entry.urls[0]} yourself and put it at {target} "
        f"({entry.bytes} bytes, sha256 {entry.sha256})"
    )


def fetch_entry(entry: CatalogEntry, *, progress: bool = True) -> Path:
    """The verified local file of ``entry``, downloading it into the cache if needed."""
    from sisr.hub.download import fetch, offline, sha256_file

    target = weights_dir() / entry.filename
    if target.is_file():
        # Placed by hand or downloaded before: fetch() re-verifies (sidecar or hash).
        if offline() and sha256_file(target) != entry.sha256:
            raise WeightsError(
                f"{entry.name}: {target} does not match the catalogue's sha256 {entry.sha256}"
            )
    elif offline():
        raise WeightsError(
            f"{entry.name}: offline (SISR_OFFLINE is set): {_by_hand(entry, target)}"
        )
    errors: list[str] = []
    for url in entry.urls:
        for _ in range(ATTEMPTS):
            try:
                return fetch(
                    url,
                    entry.sha256,
                    cache_dir=target.parent,
                    filename=entry.filename,
                    progress=progress,
                    size=entry.bytes,
                )
            except DownloadError as exc:
                errors.append(str(exc))
                if _unreachable(exc):
                    break  # no network or no host: retrying this URL will not help
    raise WeightsError(
        f"{entry.name}: could not download it ({'; '.join(errors)}); {_by_hand(entry, target)}"
    )


def _unreachable(exc: DownloadError) -> bool:
    """Connection-level failures (DNS, refused, no route) and HTTP errors are not retried."""
    text = str(exc)
    return any(
        s in text
        for s in ("Name or service", "nodename", "refused", "unreachable", "HTTP ", "timed out")
    )


def describe(entry: CatalogEntry) -> dict[str, Any]:
    """A catalogue line for listings: the facts plus how sisr runs it and whether it is cached."""
    target = weights_dir() / entry.filename
    if entry.sisr_arch is not None:
        runs = "native"
    else:
        from sisr.hub.foreign import spandrel_available

        runs = "spandrel" if spandrel_available() else "needs spandrel"
    return {**entry.to_dict(), "runs": runs, "cached": target.is_file()}


__all__ = ["ATTEMPTS", "CatalogEntry", "catalog", "describe", "fetch_entry", "weights_dir"]
