"""Tiled inference with bounded device memory, exact at tile seams.

The input image stays in host memory (uint8 / uint16 / float numpy array, or a tensor);
only one batch of tile *windows* at a time goes to the device. A window is a tile's *core*
plus ``pad`` pixels of context on each side; the network runs on the window and only the
core's output is kept, written into a preallocated output array (uint8/uint16 for images,
an ``np.memmap`` in a temporary folder when it is large). With ``pad`` >= the network's
receptive radius (:attr:`ArchInfo.receptive_radius`) a core's output does not depend on
anything outside its window, so the tiled result equals the untiled one.

Geometry (per axis, in LR pixels): the image is virtually reflect-padded at the end to a
multiple ``m`` of the network's ``size_multiple`` (the padding is cropped from the output);
cores are ``tile`` long (a multiple of ``m``), windows are ``tile + 2 * pad`` long, all the
same size (windows at the image edge are shifted inwards rather than cut), so tiles batch
together, and every window starts at a multiple of ``m``, as the whole-image run would see.

``tile="auto"`` sizes come from :mod:`sisr.infer.tile_size`. A CUDA out-of-memory error
halves the tile and retries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sisr.errors import SisrError, StorageError

Forward = Callable[[Tensor], Tensor]

MIN_TILE = 16
# Outputs above this many bytes go to a memory-mapped file instead of RAM.
MEMMAP_THRESHOLD = 1 << 30


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: core [c0, c1) (clipped to the image) and window [w0, w1)
    (in the virtually padded image)."""

    c0: int
    c1: int
    w0: int
    w1: int


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def plan_axis(length: int, tile: int, pad: int, multiple: int = 1) -> list[AxisTile]:
    """Split ``[0, length)`` into cores of at most ``tile`` (evened out), each with a window
    of the core size + ``2 * pad``.

    ``tile <= 0`` or an axis that fits in one window gives a single tile whose window is
    the whole (padded) axis. All windows have the same length and start at multiples of
    ``multiple``.
    """
    if length <= 0:
        raise ValueError(f"cannot tile an axis of length {length}")
    m = max(1, int(multiple))
    padded = round_up(length, m)
    if tile <= 0:
        return [AxisTile(0, length, 0, padded)]
    t = round_up(max(int(tile), 1), m)
    p = round_up(max(int(pad), 0), m)
    if padded <= t + 2 * p:
        return [AxisTile(0, length, 0, padded)]
    # As many cores as tiles of `tile` need, but evened out: 1000 px in tiles of 960 are
    # two cores of 500, not 960 + 40 (every window costs a full window).
    n = -(-length // t)
    t = round_up(-(-length // n), m)
    win = t + 2 * p
    tiles = []
    for c0 in range(0, length, t):
        c1 = min(c0 + t, length)
        w0 = min(max(c0 - p, 0), padded - win)
        tiles.append(AxisTile(c0, c1, w0, w0 + win))
    return tiles


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray | slice:
    """Indices of ``[start, stop)`` in an axis of ``length`` reflect-padded at the end
    (``torch`` "reflect" mode, repeated if the padding is longer than the axis)."""
    if stop <= length:
        return slice(start, stop)
    idx = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(idx)
    period = 2 * (length - 1)
    idx = idx % period
    return np.where(idx >= length, period - idx, idx)


# --------------------------------------------------------------------------- images


def _max_value(dtype: Any) -> float | None:
    """Full-scale value of an integer pixel dtype (None for floats)."""
    if dtype in (np.uint8, torch.uint8):
        return 255.0
    if dtype in (np.uint16, torch.uint16):
        return 65535.0
    return None


def _np_window(image: np.ndarray, rows: Any, cols: Any, device: torch.device) -> Tensor:
    """HxWxC host array -> window (C, h, w) float32 on ``device`` in [0, 1]."""
    if isinstance(rows, slice) and isinstance(cols, slice):
        win = image[rows, cols]
    else:
        r = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        c = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else cols
        win = image[np.ix_(r, c)]
    scale = _max_value(win.dtype)
    if win.dtype == np.uint16:
        win = win.astype(np.int32)  # torch has limited uint16 support
    elif not (win.flags.c_contiguous and win.flags.writeable):
        win = np.array(win)  # torch.from_numpy wants a writable, contiguous buffer
    t = torch.from_numpy(win)
    t = t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
    # (C, h, w) view of HWC memory: channels-last strides, which the networks run in on CPU.
    t = t.permute(2, 0, 1).to(torch.float32)
    if scale is not None:
        t = t.div_(scale)  # integer input: .to() above made a fresh float tensor
    return t


def _tensor_window(image: Tensor, rows: Any, cols: Any, device: torch.device) -> Tensor:
    """(C, H, W) tensor -> window (C, h, w) float32 on ``device``."""
    r = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=image.device)
    c = cols if isinstance(cols, slice) else torch.as_tensor(cols, device=image.device)
    win = image[:, r, :][:, :, c]
    return win.to(device=device, dtype=torch.float32)


def quantize(y: Tensor, dtype: Any) -> Tensor:
    """Float output -> integer pixels: clip to [0, 1], scale, round half up (as
    :func:`sisr.io.write_image`). (..) -> (..) of the integer dtype (uint16 as int32)."""
    full = _max_value(dtype)
    assert full is not None
    # floor(clip(y, 0, 1) * full + 0.5) in three passes: for y in [0, 1] the arithmetic is
    # the same; outside, the clamp to [0, full + 0.5] then truncation gives 0 or full.
    q = y.float().mul(full).add_(0.5).clamp_(0.0, full + 0.5)
    return q.to(torch.uint8) if full == 255.0 else q.to(torch.int32)


# Room left on the temporary filesystem besides a memory-mapped output (the result file and
# other programs need some too).
DISK_MARGIN = 64 << 20


def ram_fallback_budget() -> int:
    """Bytes an output may take in RAM when its temporary folder has no room for it: half of
    the memory available right now (0 where that is unknown, so the caller refuses)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.0f} MB" if nbytes >= 1e6 else f"{nbytes:,.0f} bytes"


def _reserve_blocks(fd: int, nbytes: int) -> None:
    """Give the file its blocks now: writing through a mapping into a sparse file that the
    filesystem cannot back kills the process with SIGBUS; here it is an ENOSPC OSError."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, nbytes)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    os.ftruncate(fd, nbytes)  # no reservation possible here: the free-space check must do


class OutputBuffer:
    """The preallocated output: RAM, or an ``np.memmap`` in a temporary folder above
    ``threshold`` bytes (default :data:`MEMMAP_THRESHOLD`; the folder is removed by
    :meth:`close`, or on garbage collection; on POSIX the file is unlinked at once, so even
    a killed process leaves nothing).

    The mapped file's blocks are reserved before the first write, after checking the free
    space; when the folder (``tmp_dir``, default ``$TMPDIR``) cannot hold the output, it goes
    to RAM if it fits :func:`ram_fallback_budget`, else :class:`StorageError` names the
    folder and nothing is left in it.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: Any,
        *,
        threshold: int | None = None,
        tmp_dir: str | Path | None = None,
    ) -> None:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        limit = MEMMAP_THRESHOLD if threshold is None else threshold
        self._dir: str | None = None
        if nbytes <= limit:
            self.array: np.ndarray = np.empty(shape, dtype=dtype)
            return
        folder = Path(tmp_dir if tmp_dir is not None else tempfile.gettempdir())
        problem = self._room_problem(folder, nbytes)
        if problem is None:
            try:
                self.array = self._map(folder, shape, dtype, nbytes)
                return
            except OSError as exc:
                self.close()
                problem = f"cannot make room there ({exc.strerror or exc})"
        if nbytes <= ram_fallback_budget():
            self.array = np.empty(shape, dtype=dtype)
            return
        raise StorageError(
            f"{folder}: {problem} for a {_mb(nbytes)} temporary output; point TMPDIR at a "
            "folder with more room (or upscale a smaller image)"
        )

    @staticmethod
    def _room_problem(folder: Path, nbytes: int) -> str | None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            return f"cannot use the folder ({exc.strerror or exc})"
        if free < nbytes + DISK_MARGIN:
            return f"not enough free space ({_mb(free)} free)"
        return None

    def _map(self, folder: Path, shape: tuple[int, ...], dtype: Any, nbytes: int) -> np.ndarray:
        self._dir = tempfile.mkdtemp(prefix="sisr-upscale-", dir=folder)
        path = os.path.join(self._dir, "output.raw")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _reserve_blocks(fd, nbytes)
            array = np.memmap(path, dtype=dtype, mode="r+", shape=shape)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)  # the mapping keeps the data (and its reserved blocks) alive
        return array

    @property
    def is_memmap(self) -> bool:
        return self._dir is not None

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.close()


# --------------------------------------------------------------------------- tiling engine


@dataclass(frozen=True)
class TileConfig:
    """tile: core size in LR pixels (0 = whole image); pad: context on each side;
    multiple: the network's size multiple; batch: windows per forward pass."""

    tile: int
    pad: int
    multiple: int = 1
    batch: int = 1


def count_tiles(height: int, width: int, cfg: TileConfig) -> int:
    return len(plan_axis(height, cfg.tile, cfg.pad, cfg.multiple)) * len(
        plan_axis(width, cfg.tile, cfg.pad, cfg.multiple)
    )


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


@torch.inference_mode()
def run_tiles(
    image: np.ndarray | Tensor,
    forward: Forward,
    scale: int,
    cfg: TileConfig,
    out: np.ndarray | Tensor,
    *,
    device: torch.device,
    clamp: bool = True,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Upscale ``image`` tile by tile into ``out``.

    image: HxWxC numpy (uint8/uint16/float) or (C, H, W) tensor; ``forward`` maps
    (N, C, h, w) float32 in [0, 1] -> (N, C, s*h, s*w). ``out``: s*H x s*W x C numpy array
    (integer dtype: quantised like write_image; float: clamped to [0, 1] if ``clamp``) or a
    (C, sH, sW) tensor. ``progress(n)`` is called after each batch with its tile count.
    """
    is_np = isinstance(image, np.ndarray)
    if is_np:
        h, w = image.shape[:2]
        read = _np_window
    else:
        h, w = image.shape[-2:]
        read = _tensor_window
    rows = plan_axis(h, cfg.tile, cfg.pad, cfg.multiple)
    cols = plan_axis(w, cfg.tile, cfg.pad, cfg.multiple)
    tiles = [(r, c) for r in rows for c in cols]
    out_is_np = isinstance(out, np.ndarray)
    out_dtype = out.dtype
    integer_out = _max_value(out_dtype) is not None
    s = scale
    for group in _batches(tiles, cfg.batch):
        wins = [
            read(image, reflect_indices(r.w0, r.w1, h), reflect_indices(c.w0, c.w1, w), device)
            for r, c in group
        ]
        x = wins[0][None] if len(wins) == 1 else torch.stack(wins)
        del wins
        y = forward(x)
        expect = (x.shape[0], x.shape[1], x.shape[2] * s, x.shape[3] * s)
        if tuple(y.shape) != expect:
            raise SisrError(
                f"the network returned {tuple(y.shape)} for input {tuple(x.shape)} "
                f"(expected {expect})"
            )
        for i, (r, c) in enumerate(group):
            part = y[
                i, :, (r.c0 - r.w0) * s : (r.c1 - r.w0) * s, (c.c0 - c.w0) * s : (c.c1 - c.w0) * s
            ]
            if integer_out:
                part = quantize(part, out_dtype)
            elif clamp:
                part = part.clamp(0.0, 1.0)
            if out_is_np:
                block = part.permute(1, 2, 0).cpu().numpy()
                out[r.c0 * s : r.c1 * s, c.c0 * s : c.c1 * s] = block
            else:
                out[:, r.c0 * s : r.c1 * s, c.c0 * s : c.c1 * s] = part.to(out.dtype)
        if progress is not None:
            progress(len(group))


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error: CUDA's, or a failed CPU allocation inside torch."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg
    )


def run_tiles_retrying(
    image: np.ndarray | Tensor,
    forward: Forward,
    scale: int,
    cfg: TileConfig,
    out: np.ndarray | Tensor,
    *,
    device: torch.device,
    clamp: bool = True,
    progress: Callable[[int], None] | None = None,
    on_retry: Callable[[TileConfig], None] | None = None,
) -> TileConfig:
    """:func:`run_tiles`, halving the batch, then the tile, on out-of-memory until it fits;
    returns the configuration that worked. Below :data:`MIN_TILE` the overlap is halved too (seams
    may then appear; a warning says so)."""
    while True:
        try:
            run_tiles(
                image, forward, scale, cfg, out, device=device, clamp=clamp, progress=progress
            )
            return cfg
        except Exception as exc:
            if not is_oom(exc):
                raise
            if cfg.tile == 0:
                h, w = image.shape[:2] if isinstance(image, np.ndarray) else image.shape[-2:]
                cfg = TileConfig(max(h, w), cfg.pad, cfg.multiple, cfg.batch)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        m = cfg.multiple
        if cfg.batch > 1:
            cfg = TileConfig(cfg.tile, cfg.pad, m, max(1, cfg.batch // 2))
        elif cfg.tile // 2 >= MIN_TILE:
            cfg = TileConfig(round_up(cfg.tile // 2, m), cfg.pad, m, 1)
        elif cfg.pad > 0:
            warnings.warn(
                f"out of memory even with {cfg.tile}-pixel tiles: reducing the tile overlap "
                f"below the network's receptive radius ({cfg.pad} -> {cfg.pad // 2}); "
                "faint seams are possible",
                stacklevel=2,
            )
            cfg = TileConfig(cfg.tile, cfg.pad // 2, m, 1)
        else:
            raise SisrError("out of device memory even with the smallest tile; use --device cpu")
        if on_retry is not None:
            on_retry(cfg)


__all__ = [
    "MEMMAP_THRESHOLD",
    "AxisTile",
    "OutputBuffer",
    "TileConfig",
    "count_tiles",
    "is_oom",
    "plan_axis",
    "quantize",
    "ram_fallback_budget",
    "reflect_indices",
    "round_up",
    "run_tiles",
    "run_tiles_retrying",
]
