"""Benchmark test sets: resolve a name to a folder of HR images, downloading on first use.

Resolution of ``name_or_dir`` (:func:`resolve_benchmark`):

1. an existing folder: its images (or those of its ``HR/`` subfolder, the EDSR layout);
2. a known name (:data:`BENCHMARKS`, case-insensitive, a few aliases such as BSD100):
   ``$SISR_DATA/benchmarks/<name>`` if present, else the cached copy
   ``<cache>/benchmarks/<name>`` (cache: ``$SISR_CACHE`` or ``~/.cache/sisr``);
3. otherwise the public archive is downloaded into ``<cache>/downloads`` and extracted.

Checksum policy. An entry whose ``sha256`` is pinned is downloaded and verified
without asking. The archives' SHA-256 could not be computed when this table was
written (no network), so today every entry has ``sha256=None`` ("unverified"):
downloading it needs an explicit opt-in (``allow_unverified=True``, the CLI's
``--allow-unverified``, or ``SISR_ALLOW_UNVERIFIED=1``). The SHA-256 of what was
downloaded is then printed so that it can be pinned here. Where the archive's
distributors publish an MD5, it is checked in every case and a mismatch is a
:class:`~sisr.errors.DownloadError` (MD5 catches corruption and wrong files, not
a deliberate forgery, hence still the opt-in).

Extraction is safe: only regular files and folders are written, never links or
devices; absolute names and ``..`` components are refused. Everything is
extracted into a temporary folder which is renamed into place only once the
expected number of images was found, so an existing cache folder is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sisr.data.sources import IMAGE_EXTENSIONS
from sisr.errors import ConfigError, DownloadError

ALLOW_UNVERIFIED_ENV = "SISR_ALLOW_UNVERIFIED"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BenchmarkSource:
    """Where a benchmark's HR images come from.

    url: public archive (zip, tar, tar.gz); None when there is no direct download.
    sha256: pinned SHA-256 of the archive; None = not pinned (download needs an opt-in).
    md5: MD5 of the archive as published by its distributors (checked when set).
    count: number of HR images the archive must contain.
    """

    name: str
    count: int
    url: str | None
    sha256: str | None = None
    md5: str | None = None
    homepage: str = ""
    note: str = ""


_HF = "https://huggingface.co/datasets/eugenesiow"

# MD5s are those published with these archives by dataset loaders that download them
# (e.g. deepinv, torchsr); they could not be re-checked here (no network).
BENCHMARKS: dict[str, BenchmarkSource] = {
    "Set5": BenchmarkSource(
        "Set5",
        5,
        f"{_HF}/Set5/resolve/main/data/Set5_HR.tar.gz",
        md5="e128ede786dabb7ebeee99e5fa1ad985",
        homepage="https://people.rennes.inria.fr/Aline.Roumy/results/SR_BMVC12.html",
    ),
    "Set14": BenchmarkSource(
        "Set14",
        14,
        f"{_HF}/Set14/resolve/main/data/Set14_HR.tar.gz",
        md5="3fce01c3dfe9760194e8a22f6bc032c5",
        homepage="https://sites.google.com/site/romanzeyde/research-interests",
    ),
    "B100": BenchmarkSource(
        "B100",
        100,
        f"{_HF}/BSD100/resolve/main/data/BSD100_HR.tar.gz",
        md5="2288d442262c1c26343fda3b36f05b03",
        homepage="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/",
        note="full-size BSDS test images (481x321 or 321x481)",
    ),
    "Urban100": BenchmarkSource(
        "Urban100",
        100,
        f"{_HF}/Urban100/resolve/main/data/Urban100_HR.tar.gz",
        md5="65d9d84a34b72c6f7ca1e26a12df1e4c",
        homepage="https://github.com/jbhuang0604/SelfExSR",
    ),
    "Manga109": BenchmarkSource(
        "Manga109",
        109,
        None,
        homepage="http://www.manga109.org/en/download.html",
        note="distributed on request for academic use; no direct download",
    ),
    "DIV2K-valid": BenchmarkSource(
        "DIV2K-valid",
        100,
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        md5="9fcdda83005c5e5997799b69f955ff88",
        homepage="https://data.vision.ee.ethz.ch/cvl/DIV2K/",
        note="images 0801-0900, about 450 MB",
    ),
}

BENCHMARK_NAMES: tuple[str, ...] = tuple(BENCHMARKS)

_ALIASES = {
    "bsd100": "B100",
    "bsds100": "B100",
    "div2k_valid": "DIV2K-valid",
    "div2k-val": "DIV2K-valid",
    "div2kvalid": "DIV2K-valid",
    "div2k_valid_hr": "DIV2K-valid",
}


def canonical_name(name: str) -> str | None:
    """The table name for ``name`` (case-insensitive, aliases), or None if unknown."""
    key = name.strip().lower()
    for known in BENCHMARKS:
        if known.lower() == key:
            return known
    return _ALIASES.get(key)


def _is_image(path: Path) -> bool:
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )


def list_benchmark_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (not recursive, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _image_folder(folder: Path) -> Path | None:
    """``folder`` if it holds images, else its ``HR`` subfolder if that does, else None."""
    for candidate in (folder, folder / "HR"):
        if candidate.is_dir() and list_benchmark_images(candidate):
            return candidate
    return None


def data_root_candidates() -> list[Path]:
    """Where the shared data folder is looked for, in order: ``$SISR_DATA`` when set, else
    ``../shared/data`` beside the current folder and beside the source checkout (as the
    tests find it), so ``sisr eval --data Set5`` works from the repository root."""
    env = os.environ.get("SISR_DATA")
    if env:
        return [Path(env).expanduser()]
    here = Path(__file__).resolve()
    out = [Path.cwd().parent / "shared" / "data"]
    if len(here.parents) > 4 and (here.parents[3] / "pyproject.toml").is_file():
        out.append(here.parents[4] / "shared" / "data")  # <repo>/src/sisr/data/x.py -> <repo>/..
    return list(dict.fromkeys(p.resolve() for p in out))


def _data_root() -> Path | None:
    for root in data_root_candidates():
        if (root / "benchmarks").is_dir():
            return root
    return None


def _looked_in(name: str) -> str:
    where = ", ".join(str(root / "benchmarks" / name) for root in data_root_candidates())
    return f"looked in {where} (set SISR_DATA to the folder holding benchmarks/)"


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from sisr.hub.download import cache_dir as default_cache_dir

    return default_cache_dir()


def _env_allows_unverified() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in {"1", "true", "yes"}


def resolve_benchmark(
    name_or_dir: str | Path,
    *,
    download: bool = True,
    allow_unverified: bool | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Folder holding the HR images of a benchmark name or of a folder given directly.

    Args:
        name_or_dir: a folder, or one of :data:`BENCHMARK_NAMES` (case-insensitive).
        download: fetch the public archive when the set is neither in ``$SISR_DATA``
            nor in the cache.
        allow_unverified: accept an archive without a pinned SHA-256 (default:
            ``$SISR_ALLOW_UNVERIFIED``).
        cache_dir: cache root (default ``$SISR_CACHE`` or ``~/.cache/sisr``).

    Raises:
        ConfigError: unknown name, or a folder without images.
        DownloadError: the set is absent and cannot be downloaded (or the download failed).
    """
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        found = _image_folder(path)
        if found is None:
            raise ConfigError(f"{path}: no image files in this folder (nor in {path / 'HR'})")
        return found
    name = canonical_name(str(name_or_dir))
    if name is None:
        raise ConfigError(
            f"{name_or_dir}: not a folder and not a known benchmark "
            f"(known: {', '.join(BENCHMARK_NAMES)})"
        )
    root = _data_root()
    if root is not None and (found := _image_folder(root / "benchmarks" / name)) is not None:
        return found
    cached = _cache_root(cache_dir) / "benchmarks" / name
    if (found := _image_folder(cached)) is not None:
        return found
    if not download:
        raise DownloadError(f"{name}: not found; {_looked_in(name)} and in {cached}")
    try:
        return download_benchmark(
            BENCHMARKS[name],
            allow_unverified=allow_unverified,
            cache_dir=cache_dir,
            progress=progress,
        )
    except DownloadError as exc:  # say where it was looked for first, then the download
        raise DownloadError(f"{name}: not found locally ({_looked_in(name)}); {exc}") from None


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download_benchmark(
    source: BenchmarkSource,
    *,
    allow_unverified: bool | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Download and extract ``source`` into ``<cache>/benchmarks/<name>``; returns that folder.

    See the module docstring for the checksum policy.
    """
    from sisr.hub.download import fetch, sha256_file

    if source.url is None:
        where = f" ({source.homepage})" if source.homepage else ""
        raise DownloadError(
            f"{source.name}: no public download ({source.note or 'not redistributable'}); "
            f"obtain it from its authors{where} and put the HR images in "
            f"$SISR_DATA/benchmarks/{source.name}, or pass the folder directly"
        )
    if allow_unverified is None:
        allow_unverified = _env_allows_unverified()
    if source.sha256 is None and not allow_unverified:
        raise DownloadError(
            f"{source.name}: the archive {source.url} has no pinned SHA-256 in sisr, so its "
            f"integrity cannot be guaranteed; pass --allow-unverified (or set "
            f"{ALLOW_UNVERIFIED_ENV}=1) to download it anyway (its SHA-256 will be printed), "
            f"or put the HR images in $SISR_DATA/benchmarks/{source.name}"
        )
    root = _cache_root(cache_dir)
    archive = fetch(source.url, source.sha256, cache_dir=root / "downloads", progress=progress)
    if source.md5 is not None and _md5_file(archive) != source.md5:
        digest = _md5_file(archive)
        archive.unlink()
        raise DownloadError(
            f"{source.url}: MD5 mismatch: expected {source.md5}, got {digest}; "
            "the download was removed"
        )
    if source.sha256 is None:
        print(
            f"sisr: {source.name}: downloaded unverified archive {archive.name}, "
            f"sha256 {sha256_file(archive)}",
            file=sys.stderr,
        )
    return _install(archive, root / "benchmarks", source)


def _install(archive: Path, parent: Path, source: BenchmarkSource) -> Path:
    """Extract ``archive`` and move its folder of images to ``parent / source.name``."""
    final = parent / source.name
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{source.name}.", dir=parent) as tmp:
        # A subfolder, so that the folder moved into place is never the temporary one.
        staging = Path(tmp) / "content"
        staging.mkdir()
        safe_extract(archive, staging)
        folders = _folders_with_images(staging)
        if len(folders) != 1:
            listed = ", ".join(str(f.relative_to(staging)) for f in folders) or "none"
            raise DownloadError(
                f"{archive}: expected one folder of images in the archive, found {listed}"
            )
        images = list_benchmark_images(folders[0])
        if source.count and len(images) != source.count:
            raise DownloadError(
                f"{archive}: expected {source.count} images for {source.name}, found {len(images)}"
            )
        if final.exists():  # e.g. a concurrent download finished first, or a stale empty folder
            shutil.rmtree(final)
        os.replace(folders[0], final)
    return final


def _folders_with_images(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX" and not d.startswith("."))
        here = Path(dirpath)
        if any(_is_image(here / f) for f in filenames):
            found.append(here)
    return found


def _safe_member_path(dest: Path, name: str, archive: Path) -> Path:
    """Target of archive member ``name`` inside ``dest``; refuses anything that could escape."""
    if "\\" in name or "\x00" in name:
        raise DownloadError(f"{archive}: refusing member with an unsafe name {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise DownloadError(f"{archive}: refusing member outside the extraction folder: {name!r}")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise DownloadError(f"{archive}: refusing member with an empty name {name!r}")
    target = dest.joinpath(*parts)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise DownloadError(f"{archive}: refusing member outside the extraction folder: {name!r}")
    return target


def _write_member(src: BinaryIO, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _extract_zip(zf: zipfile.ZipFile, archive: Path, dest: Path) -> None:
    for info in zf.infolist():
        # Unix file type in the high bits; 0 (no Unix attributes) means a plain file.
        ftype = stat.S_IFMT(info.external_attr >> 16)
        if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise DownloadError(f"{archive}: refusing non-regular member {info.filename!r}")
        target = _safe_member_path(dest, info.filename, archive)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            with zf.open(info) as src:
                _write_member(src, target)


def _extract_tar(tf: tarfile.TarFile, archive: Path, dest: Path) -> None:
    for member in tf:
        target = _safe_member_path(dest, member.name, archive)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            src = tf.extractfile(member)
            if src is None:  # pragma: no cover - isfile() members always have data
                raise DownloadError(f"{archive}: cannot read member {member.name!r}")
            with src:
                _write_member(src, target)
        else:
            raise DownloadError(
                f"{archive}: refusing member {member.name!r} (links and special files "
                "are not extracted)"
            )


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into the existing folder ``dest``.

    Only regular files and folders are created; a member that is a link or a
    special file, or whose name is absolute or climbs out with ``..``, aborts the
    extraction with :class:`DownloadError` (files already written stay in ``dest``,
    which callers use as a scratch folder). Existing files are never overwritten.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _extract_zip(zf, archive, dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                _extract_tar(tf, archive, dest)
        else:
            raise DownloadError(f"{archive}: not a zip or tar archive")
    except FileExistsError as exc:
        raise DownloadError(f"{archive}: duplicate member {exc.filename}") from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive}: corrupt archive ({exc})") from exc


__all__ = [
    "ALLOW_UNVERIFIED_ENV",
    "BENCHMARKS",
    "BENCHMARK_NAMES",
    "BenchmarkSource",
    "canonical_name",
    "download_benchmark",
    "list_benchmark_images",
    "resolve_benchmark",
    "safe_extract",
]
