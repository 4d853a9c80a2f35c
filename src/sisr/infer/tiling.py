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

``tile="auto"``: on CUDA the largest window that fits in free memory, from a per-network
memory probe cached in ``<cache>/tile_probe.json``; on CPU a fixed size. A CUDA
out-of-memory error halves the tile and retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sisr.errors import SisrError

Forward = Callable[[Tensor], Tensor]

# --tile auto on the CPU: windows whose activations take about this much memory.
CPU_TILE_BUDGET = 768 << 20
CPU_MIN_TILE = 64
MIN_TILE = 16
MAX_AUTO_TILE = 2048
# Outputs above this many bytes go to a memory-mapped file instead of RAM.
MEMMAP_THRESHOLD = 1 << 30
# Share of the free CUDA memory that --tile auto plans to use.
CUDA_MEMORY_FRACTION = 0.7


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


class OutputBuffer:
    """The preallocated output: RAM, or an ``np.memmap`` in a temporary folder above
    ``threshold`` bytes (the folder is removed by :meth:`close`, or on garbage collection;
    on POSIX the file is unlinked at once, so even a killed process leaves nothing)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: Any,
        *,
        threshold: int = MEMMAP_THRESHOLD,
        tmp_dir: str | Path | None = None,
    ) -> None:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self._dir: str | None = None
        if nbytes > threshold:
            self._dir = tempfile.mkdtemp(prefix="sisr-upscale-", dir=tmp_dir)
            path = os.path.join(self._dir, "output.raw")
            self.array: np.ndarray = np.memmap(path, dtype=dtype, mode="w+", shape=shape)
            with contextlib.suppress(OSError):
                os.unlink(path)  # the mapping keeps the data alive
        else:
            self.array = np.empty(shape, dtype=dtype)

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


# --------------------------------------------------------------------------- auto tile


@dataclass(frozen=True)
class MemoryModel:
    """Peak device memory of one forward pass: ``fixed + per_pixel * window pixels``."""

    fixed: float
    per_pixel: float


_PROBE_LOCK = threading.Lock()
_PROBE_MEMO: dict[str, MemoryModel] = {}


def probe_key(model: torch.nn.Module, dtype: torch.dtype, device: torch.device, extra: str) -> str:
    """Identifies a probe: architecture + hparams + dtype + GPU model (+ TTA etc.)."""
    arch = getattr(model, "arch_id", type(model).__name__)
    hp = json.dumps(getattr(model, "hparams", {}), sort_keys=True, default=str)
    digest = hashlib.sha256(hp.encode()).hexdigest()[:12]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"{arch}:{digest}:{str(dtype).removeprefix('torch.')}:{gpu}:{extra}"


def _probe_file() -> Path:
    from sisr.hub.download import cache_dir

    return cache_dir() / "tile_probe.json"


def _load_probes() -> dict[str, Any]:
    try:
        data = json.loads(_probe_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_probe(key: str, mm: MemoryModel) -> None:
    from sisr.io.atomic import atomic_write_bytes

    data = _load_probes()
    data[key] = {"fixed": mm.fixed, "per_pixel": mm.per_pixel}
    with contextlib.suppress(OSError):
        atomic_write_bytes(_probe_file(), json.dumps(data, indent=1, sort_keys=True).encode())


def measure_memory(
    forward: Forward, channels: int, device: torch.device, multiple: int, sizes: tuple[int, int]
) -> MemoryModel:
    """Fit peak CUDA memory of ``forward`` against window pixels from two square sizes."""
    points = []
    for n in sizes:
        n = round_up(n, multiple)
        x = torch.zeros(1, channels, n, n, device=device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            y = forward(x)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del x, y
        points.append((n * n, float(peak)))
    (p1, m1), (p2, m2) = points
    per_px = max((m2 - m1) / (p2 - p1), 1.0)
    return MemoryModel(fixed=max(m1 - per_px * p1, 0.0), per_pixel=per_px)


def memory_model(
    key: str, forward: Forward, channels: int, device: torch.device, multiple: int
) -> MemoryModel:
    """The (cached) memory model for ``key``: process memo, then the JSON cache, then a probe."""
    with _PROBE_LOCK:
        if key in _PROBE_MEMO:
            return _PROBE_MEMO[key]
        entry = _load_probes().get(key)
        if isinstance(entry, dict) and {"fixed", "per_pixel"} <= set(entry):
            mm = MemoryModel(float(entry["fixed"]), float(entry["per_pixel"]))
        else:
            mm = measure_memory(forward, channels, device, multiple, (64, 128))
            _save_probe(key, mm)
        _PROBE_MEMO[key] = mm
        return mm


def cuda_auto_tile(
    mm: MemoryModel, device: torch.device, pad: int, multiple: int, batch: int
) -> int:
    """Largest tile core whose window batch fits in the free CUDA memory."""
    free, _total = torch.cuda.mem_get_info(device)
    reserved_free = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    budget = CUDA_MEMORY_FRACTION * (free + reserved_free) - mm.fixed
    px = budget / (mm.per_pixel * max(1, batch))
    side = int(math.sqrt(max(px, 0.0)))
    tile = (side - 2 * pad) // multiple * multiple
    return int(min(max(tile, MIN_TILE), MAX_AUTO_TILE))


def activation_bytes_per_pixel(
    forward: Forward, model: torch.nn.Module, channels: int, device: torch.device, multiple: int
) -> float:
    """Rough peak activation memory per input pixel: from the outputs of the network's leaf
    modules on a small input, the largest input + output pair plus the largest single one
    (for skip connections holding an early feature map)."""
    sizes: list[int] = []

    def hook(_mod: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            sizes.append(out.numel() * out.element_size())

    side = round_up(32, multiple)
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            forward(torch.zeros(1, channels, side, side, device=device))
    finally:
        for h in handles:
            h.remove()
    x_bytes = channels * side * side * 4
    seq = [x_bytes, *sizes]
    pair = max(a + b for a, b in itertools.pairwise(seq)) if len(seq) > 1 else x_bytes
    return (pair + max(seq)) / (side * side)


def cpu_auto_tile(bytes_per_pixel: float, pad: int, multiple: int) -> int:
    """Tile core for the CPU: the largest square window within :data:`CPU_TILE_BUDGET`.

    Large windows matter on the CPU: every layer call has a fixed cost (thread start-up and
    hand-off), which small tiles pay many times over.
    """
    side = int(math.sqrt(CPU_TILE_BUDGET / max(bytes_per_pixel, 1.0)))
    tile = (side - 2 * pad) // 64 * 64
    return round_up(int(min(max(tile, CPU_MIN_TILE), MAX_AUTO_TILE)), multiple)


__all__ = [
    "CPU_TILE_BUDGET",
    "MEMMAP_THRESHOLD",
    "AxisTile",
    "MemoryModel",
    "OutputBuffer",
    "TileConfig",
    "activation_bytes_per_pixel",
    "count_tiles",
    "cpu_auto_tile",
    "cuda_auto_tile",
    "is_oom",
    "measure_memory",
    "memory_model",
    "plan_axis",
    "probe_key",
    "quantize",
    "reflect_indices",
    "round_up",
    "run_tiles",
    "run_tiles_retrying",
]
