"""Decoded image cache: decode every training image once into one uint8 array file.

Layout of a cache folder (default ``<cache_dir>/datasets/<digest of the source key>``,
or any folder given explicitly, e.g. inside a run folder)::

    index.json          version, source key, data file name, total bytes, and per image:
                        source path, size, mtime_ns, byte offset, shape (3, H, W)
    images-<tok>.u8     all images back to back, each planar (C, H, W) uint8
    .lock               advisory lock held while building

Opening validates the index against the source files (same list in the same order,
same size and mtime for each); any difference rebuilds the cache. A build decodes
every file (the first bad file stops it with an ImageError naming that file), writes
the data file and then the index through :func:`sisr.io.atomic.atomic_path`, so an
interrupted build leaves no index and the next open rebuilds from scratch. Reading
a valid cache never decodes an image: the data file is memory-mapped and
:meth:`DecodedSet.image` returns zero-copy views.

Concurrent opens (DDP ranks) serialise on the lock file; the later ones find the
cache valid and just map it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sisr.data.sources import ImageList
from sisr.errors import ConfigError, ImageError
from sisr.io.atomic import atomic_path, atomic_write_bytes

CACHE_VERSION = 1
INDEX_NAME = "index.json"


def default_cache_dir() -> Path:
    """``$SISR_CACHE``, else ``~/.cache/sisr`` (the same root as :mod:`sisr.hub` downloads)."""
    env = os.environ.get("SISR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sisr"


def cache_folder_for(images: ImageList, cache_dir: str | Path | None = None) -> Path:
    """Default cache folder of a source: ``<cache_dir>/datasets/<digest>``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "datasets" / images.digest


def _decode(path: Path) -> np.ndarray:
    """Decode one image to (H, W, 3) uint8. Tests replace this to count decodes."""
    from sisr.io import read_rgb_uint8

    return read_rgb_uint8(path)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_index(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / INDEX_NAME).read_text())
    except (OSError, ValueError):
        return None


def _index_matches(index: dict[str, Any] | None, folder: Path, images: ImageList) -> bool:
    """True when ``index`` describes exactly the current ``images`` files and its data exists."""
    if not index or index.get("version") != CACHE_VERSION or index.get("key") != images.key:
        return False
    entries = index.get("entries", [])
    if [e["path"] for e in entries] != [str(p) for p in images.files]:
        return False
    for e, p in zip(entries, images.files, strict=True):
        try:
            if _stat(p) != (e["size"], e["mtime_ns"]):
                return False
        except OSError:
            return False
    data = folder / str(index.get("data", ""))
    try:
        return data.is_file() and data.stat().st_size == index["total_bytes"]
    except OSError:
        return False


def _build(folder: Path, images: ImageList, progress: bool) -> dict[str, Any]:
    """Decode all files into a new data file, then publish a new index (both atomic)."""
    stats = []
    for p in images.files:
        try:
            stats.append(_stat(p))
        except OSError as exc:
            raise ImageError(p, f"cannot read file ({exc.strerror or exc})") from exc
    token = hashlib.sha256(
        json.dumps(
            [images.key, [[str(p), *s] for p, s in zip(images.files, stats, strict=True)]]
        ).encode()
    ).hexdigest()[:16]
    data_name = f"images-{token}.u8"
    entries: list[dict[str, Any]] = []
    offset = 0
    files: Sequence[Path] = images.files
    if progress:
        from tqdm import tqdm

        # disable=None: no bar (and no \r codes) when stderr is not a terminal
        files = tqdm(files, desc=f"decoding {len(files)} images", unit="img", disable=None)
    with atomic_path(folder / data_name) as tmp, open(tmp, "wb") as out:
        for p, (size, mtime_ns) in zip(files, stats, strict=True):
            try:
                hwc = _decode(p)
            except ImageError:
                raise
            except Exception as exc:  # decoder bugs or odd formats: still name the file
                raise ImageError(p, f"cannot decode image ({exc})") from exc
            if hwc.dtype != np.uint8 or hwc.ndim != 3 or hwc.shape[2] != 3:
                raise ImageError(p, f"decoder returned {hwc.dtype} {hwc.shape}, not HxWx3 uint8")
            chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
            out.write(chw.tobytes())
            entries.append(
                {
                    "path": str(p),
                    "size": size,
                    "mtime_ns": mtime_ns,
                    "offset": offset,
                    "shape": list(chw.shape),
                }
            )
            offset += chw.nbytes
        out.flush()
    index = {
        "version": CACHE_VERSION,
        "key": images.key,
        "data": data_name,
        "total_bytes": offset,
        "entries": entries,
    }
    atomic_write_bytes(folder / INDEX_NAME, json.dumps(index, indent=1).encode())
    # Data files of older builds are no longer referenced by the index.
    for old in folder.glob("images-*.u8"):
        if old.name != data_name:
            with contextlib.suppress(OSError):
                old.unlink()
    return index


def open_decoded(
    images: ImageList | Sequence[str | Path],
    *,
    cache_dir: str | Path | None = None,
    folder: str | Path | None = None,
    progress: bool = False,
) -> DecodedSet:
    """Open the decoded cache of ``images``, building or rebuilding it when needed.

    ``folder``: explicit cache folder (e.g. inside a run folder); otherwise
    :func:`cache_folder_for` under ``cache_dir`` (default :func:`default_cache_dir`).
    A plain list of files is keyed by its resolved paths. Raises ImageError naming
    the first file that cannot be decoded (no cache is left behind).
    """
    if not isinstance(images, ImageList):
        files = tuple(Path(p).resolve() for p in images)
        images = ImageList(files, json.dumps({"layout": "files", "files": [str(p) for p in files]}))
    if not images.files:
        raise ConfigError("no images to cache")
    target = Path(folder) if folder is not None else cache_folder_for(images, cache_dir)
    index = _read_index(target)
    if not _index_matches(index, target, images):
        with _locked(target):
            index = _read_index(target)  # another process may have built it meanwhile
            if not _index_matches(index, target, images):
                index = _build(target, images, progress)
    assert index is not None
    return DecodedSet._from_index(target, index)


class DecodedSet:
    """Decoded uint8 images, each (3, H, W), stored back to back in one flat buffer.

    Backed by the memory-mapped cache file (see :func:`open_decoded`) or, for small
    in-memory sets, by a numpy array (:meth:`from_arrays`).
    """

    def __init__(
        self,
        flat: np.ndarray,
        offsets: Sequence[int],
        shapes: Sequence[tuple[int, int, int]],
        paths: Sequence[str],
        folder: Path | None = None,
        index: dict[str, Any] | None = None,
    ) -> None:
        self._flat = flat
        self.offsets = [int(o) for o in offsets]
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.paths = list(paths)
        self.folder = folder
        self._index = index

    @classmethod
    def _from_index(cls, folder: Path, index: dict[str, Any]) -> DecodedSet:
        flat = _map(folder / index["data"], int(index["total_bytes"]))
        e = index["entries"]
        return cls(
            flat,
            [x["offset"] for x in e],
            [tuple(x["shape"]) for x in e],
            [x["path"] for x in e],
            folder,
            index,
        )

    @classmethod
    def from_arrays(
        cls, images: Sequence[np.ndarray | Tensor], paths: Sequence[str] | None = None
    ) -> DecodedSet:
        """In-memory set from (H, W, 3) uint8 arrays (numpy) or (3, H, W) uint8 tensors."""
        chws: list[np.ndarray] = []
        for i, im in enumerate(images):
            a = im.numpy() if isinstance(im, Tensor) else np.asarray(im).transpose(2, 0, 1)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[0] != 3:
                raise ValueError(f"image {i}: expected 3-channel uint8, got {a.dtype} {a.shape}")
            chws.append(np.ascontiguousarray(a))
        if not chws:
            raise ConfigError("no images given")
        offsets = np.cumsum([0] + [a.size for a in chws[:-1]]).tolist()
        flat = np.concatenate([a.reshape(-1) for a in chws])
        names = list(paths) if paths is not None else [f"<memory {i}>" for i in range(len(chws))]
        return cls(flat, offsets, [a.shape for a in chws], names)

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def nbytes(self) -> int:
        """Total decoded size in bytes."""
        return int(self._flat.size)

    def flat(self) -> Tensor:
        """The whole buffer as a 1-D uint8 tensor (zero-copy)."""
        return torch.from_numpy(self._flat)

    def image(self, i: int) -> Tensor:
        """Image ``i`` as a (3, H, W) uint8 tensor viewing the buffer (no copy, no decode)."""
        c, h, w = self.shapes[i]
        o = self.offsets[i]
        return torch.from_numpy(self._flat[o : o + c * h * w]).view(c, h, w)

    def image_np(self, i: int) -> np.ndarray:
        """Image ``i`` as a (3, H, W) uint8 numpy view."""
        c, h, w = self.shapes[i]
        o = self.offsets[i]
        return self._flat[o : o + c * h * w].reshape(c, h, w)

    def to_device(self, device: torch.device | str) -> DeviceSet:
        """All images packed into one flat uint8 tensor on ``device`` (zero-copy on CPU)."""
        return DeviceSet.build(self.flat(), self.offsets, self.shapes, self.paths, device)

    # Pickling (DataLoader workers started by spawn) re-maps the file instead of copying it.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.folder is not None and self._index is not None:
            state["_flat"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._flat is None:
            assert self.folder is not None and self._index is not None
            self._flat = _map(self.folder / self._index["data"], int(self._index["total_bytes"]))


def _map(path: Path, nbytes: int) -> np.ndarray:
    # Copy-on-write mapping: shares pages with the file, yet numpy reports it writable so
    # torch.from_numpy does not warn; writes (none are made) would stay private.
    return np.memmap(path, dtype=np.uint8, mode="c", shape=(nbytes,))


@dataclass
class DeviceSet:
    """All images in one flat uint8 tensor on one device, plus per-image metadata.

    flat: (total,) uint8; offsets, heights, widths: (n,) int64 on the same device.
    ``shapes``/``offsets_host`` keep host copies so samplers never sync with the device.
    """

    flat: Tensor
    offsets: Tensor
    heights: Tensor
    widths: Tensor
    shapes: list[tuple[int, int, int]]
    offsets_host: list[int]
    paths: list[str]

    @classmethod
    def build(
        cls,
        flat: Tensor,
        offsets: Sequence[int],
        shapes: Sequence[tuple[int, int, int]],
        paths: Sequence[str],
        device: torch.device | str,
    ) -> DeviceSet:
        device = torch.device(device)
        if any(s[0] != 3 for s in shapes):
            raise ValueError("DeviceSet holds 3-channel images only")
        meta = torch.tensor(
            [[int(o), s[1], s[2]] for o, s in zip(offsets, shapes, strict=True)], dtype=torch.int64
        ).to(device)
        return cls(
            flat.to(device),
            meta[:, 0].contiguous(),
            meta[:, 1].contiguous(),
            meta[:, 2].contiguous(),
            [tuple(s) for s in shapes],  # type: ignore[misc]
            [int(o) for o in offsets],
            list(paths),
        )

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def device(self) -> torch.device:
        return self.flat.device

    @property
    def nbytes(self) -> int:
        return int(self.flat.numel())

    def image(self, i: int) -> Tensor:
        c, h, w = self.shapes[i]
        o = self.offsets_host[i]
        return self.flat[o : o + c * h * w].view(c, h, w)

    def to_device(self, device: torch.device | str) -> DeviceSet:
        if _same_device(torch.device(device), self.device):
            return self
        return DeviceSet.build(self.flat, self.offsets_host, self.shapes, self.paths, device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Device equality that treats ``cuda`` as the current CUDA device."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    cur = torch.cuda.current_device()
    return (a.index if a.index is not None else cur) == (b.index if b.index is not None else cur)
