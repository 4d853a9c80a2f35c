"""Where training images come from: lists of files with a stable identity key.

Two layouts are understood:

* HR folders (:func:`hr_folders`): every image under one or more folders,
  recursively, any sizes; LR patches are made on the fly from HR patches.
* Paired folders (:func:`folder_pairs`): your own HR and LR images in two folders, matched
  by file name (relative path without the extension; an LR name may end in ``x<s>``), their
  sizes checked against the scale from the headers.
* DIV2K (:func:`div2k_pairs`): ``<root>/DIV2K_<split>_HR/NNNN.png`` paired by name
  with ``<root>/DIV2K_<split>_LR_<kind>/X<s>/NNNNx<s>.png`` (kind: bicubic, unknown,
  ...), giving two aligned file lists (HR, LR).

Files are only listed here; decoding (and the clear error naming a bad file)
happens when the decoded cache is built (:mod:`sisr.data.cache`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sisr.errors import ConfigError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class ImageList:
    """An ordered list of image files and the key naming where they came from.

    ``key`` identifies the *source* (folders, layout), not its current contents, so
    the decoded cache for a folder stays in one place and is rebuilt in place when
    files change. ``digest`` is a short hash of the key, used as a folder name.
    """

    files: tuple[Path, ...]
    key: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.files)


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def list_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (recursive, hidden files skipped), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of images")
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def hr_folders(folders: str | Path | Iterable[str | Path]) -> ImageList:
    """Every image under the given folder(s), recursively, in a stable order.

    Raises ConfigError when a folder is missing or when no image is found.
    """
    if isinstance(folders, str | Path):
        folders = [folders]
    roots = [Path(f).resolve() for f in folders]
    if not roots:
        raise ConfigError("no training image folder given")
    files: list[Path] = []
    for root in roots:
        found = list_images(root)
        if not found:
            raise ConfigError(f"{root}: no image files found (looked for {_ext_list()})")
        files.extend(found)
    key = json.dumps({"layout": "hr_folders", "roots": [str(r) for r in roots]})
    return ImageList(tuple(files), key)


def _ext_list() -> str:
    return ", ".join(sorted(IMAGE_EXTENSIONS))


def div2k_pairs(
    root: str | Path, scale: int, *, split: str = "train", kind: str = "bicubic"
) -> tuple[ImageList, ImageList]:
    """Aligned (HR, LR) lists for the DIV2K layout under ``root``.

    HR ``DIV2K_<split>_HR/<name>.<ext>`` pairs with
    ``DIV2K_<split>_LR_<kind>/X<scale>/<name>x<scale>.<ext>``. Every HR image must have
    its LR partner and vice versa; otherwise ConfigError lists the unmatched names.
    The HR list's key does not depend on the scale, so one decoded HR cache serves
    all scales.
    """
    root = Path(root).resolve()
    if scale < 1:
        raise ConfigError(f"scale must be >= 1, got {scale}")
    hr_dir = root / f"DIV2K_{split}_HR"
    lr_dir = root / f"DIV2K_{split}_LR_{kind}" / f"X{scale}"
    for d in (hr_dir, lr_dir):
        if not d.is_dir():
            raise ConfigError(f"{d}: missing (expected the DIV2K layout under {root})")
    hr = {p.stem: p for p in hr_dir.iterdir() if _is_image(p)}
    lr = {_pair_name(p.stem, scale): p for p in lr_dir.iterdir() if _is_image(p)}
    names = _matched(hr, lr, hr_dir, lr_dir, "DIV2K pairing failed")
    return _lists(hr, lr, names, hr_dir, lr_dir)


def folder_pairs(hr_dir: str | Path, lr_dir: str | Path, scale: int) -> tuple[ImageList, ImageList]:
    """Aligned (HR, LR) lists from two folders of your own images, matched by name.

    A file's name is its path under its folder without the extension, so ``a.png`` pairs
    with ``a.jpg``; an LR name may end in ``x<scale>`` (``ax2.png``). Every image needs its
    partner, and every LR must be its HR's size divided by the scale (the HR may have up to
    ``scale - 1`` extra rows and columns), read from the file headers before anything is
    decoded; otherwise ConfigError lists what does not match.
    """
    if scale < 1:
        raise ConfigError(f"scale must be >= 1, got {scale}")
    hr_root, lr_root = Path(hr_dir).resolve(), Path(lr_dir).resolve()
    hr = _by_name(hr_root, lambda rel: rel)
    lr = _by_name(lr_root, lambda rel: _pair_name(rel, scale))
    if not hr:
        raise ConfigError(f"{hr_root}: no image files found")
    names = _matched(hr, lr, hr_root, lr_root, "data.pairs: pairing failed")
    _check_sizes(hr, lr, names, scale)
    return _lists(hr, lr, names, hr_root, lr_root, layout="pairs")


def _pair_name(stem: str, scale: int) -> str:
    suffix = f"x{scale}"
    return stem[: -len(suffix)] if stem.lower().endswith(suffix) and stem != suffix else stem


def _by_name(root: Path, name: Callable[[str], str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in list_images(root):
        key = name(p.relative_to(root).with_suffix("").as_posix())
        if key in out:
            raise ConfigError(f"{root}: {out[key].name} and {p.name} have the same name")
        out[key] = p
    return out


def _matched(
    hr: dict[str, Path], lr: dict[str, Path], hr_dir: Path, lr_dir: Path, what: str
) -> list[str]:
    if not hr:
        raise ConfigError(f"{hr_dir}: no image files found")
    missing_lr = sorted(set(hr) - set(lr))
    missing_hr = sorted(set(lr) - set(hr))
    if missing_lr or missing_hr:
        parts = []
        if missing_lr:
            parts.append(f"no LR in {lr_dir} for {_few(missing_lr)}")
        if missing_hr:
            parts.append(f"no HR in {hr_dir} for {_few(missing_hr)}")
        raise ConfigError(f"{what}: " + "; ".join(parts))
    return sorted(hr)


def _check_sizes(hr: dict[str, Path], lr: dict[str, Path], names: list[str], scale: int) -> None:
    """Every LR is its HR's size divided by ``scale``, from the headers (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    wrong = []
    for n in names:
        try:
            with Image.open(hr[n]) as a, Image.open(lr[n]) as b:
                (hw, hh), (lw, lh) = a.size, b.size
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ConfigError(f"data.pairs: cannot read the size of {n}: {exc}") from None
        if (lw, lh) != (hw // scale, hh // scale):
            wrong.append(
                f"{n} (HR {hw}x{hh}, LR {lw}x{lh}, x{scale} needs {hw // scale}x{hh // scale})"
            )
    if wrong:
        raise ConfigError(
            f"data.pairs: {len(wrong)} of {len(names)} pairs do not match at x{scale}: {_few(wrong)}"
        )


def _lists(
    hr: dict[str, Path],
    lr: dict[str, Path],
    names: list[str],
    hr_dir: Path,
    lr_dir: Path,
    layout: str = "hr_folders",
) -> tuple[ImageList, ImageList]:
    """``layout`` goes into the cache keys: matched subsets of a folder must not share a
    decoded cache with the whole folder (each would rebuild it for the other)."""

    def image_list(files: dict[str, Path], root: Path) -> ImageList:
        key = json.dumps({"layout": layout, "roots": [str(root)]})
        return ImageList(tuple(files[n] for n in names), key)

    return image_list(hr, hr_dir), image_list(lr, lr_dir)


def _few(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
