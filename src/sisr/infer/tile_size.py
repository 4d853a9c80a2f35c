"""How large a tile may be: ``tile="auto"`` from measured memory.

On CUDA the largest window that fits in free memory, from a per-network memory probe cached
in ``<cache>/tile_probe.json``; on CPU the largest window whose peak memory, measured once
per network on a small input (every tensor alive at once, not only layer outputs), fits
:data:`CPU_TILE_BUDGET`. The tiles themselves are run by :mod:`sisr.infer.tiling`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sisr.infer.tiling import MIN_TILE, quantize, round_up

Forward = Callable[[Tensor], Tensor]

# --tile auto on the CPU: windows whose activations take about this much memory.
CPU_TILE_BUDGET = 768 << 20
CPU_MIN_TILE = 64
MAX_AUTO_TILE = 2048
# Share of the free CUDA memory that --tile auto plans to use.
CUDA_MEMORY_FRACTION = 0.7


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


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensor storages created under it that are still alive, and the
    peak of that count: what a forward pass really holds at once, functional intermediates
    (``h * 2``, ``torch.cat``) included, which leaf-module hooks never see. The mode is
    per thread, so other threads' work is not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = 0
        self.peak = 0

    def _track(self, t: Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self.live or storage.nbytes() == 0:
            return  # a view or an in-place result: no new memory
        self.live[key] = storage.nbytes()
        self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                self._track(t)
        return out


def _leaf_bytes_per_pixel(
    forward: Forward, model: torch.nn.Module, channels: int, device: torch.device, side: int
) -> float:
    """Lower bound from the outputs of the network's leaf modules: the largest input + output
    pair plus the largest single one (for skip connections holding an early feature map)."""
    sizes: list[int] = []

    def hook(_mod: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            sizes.append(out.numel() * out.element_size())

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


def activation_bytes_per_pixel(
    forward: Forward, model: torch.nn.Module, channels: int, device: torch.device, multiple: int
) -> float:
    """Peak memory per input pixel of one tile: the input window, everything the forward pass
    holds at once and the quantised output, measured on a small input by counting live tensor
    storages (:class:`_LiveBytes`). Never below the leaf-module estimate, which is what is
    left where counting does not work."""
    side = round_up(64, multiple)
    leaf = _leaf_bytes_per_pixel(forward, model, channels, device, side)
    x = torch.zeros(1, channels, side, side, device=device)
    counter = _LiveBytes()
    try:
        with torch.inference_mode(), counter:
            y = forward(x)
            quantize(y, torch.uint8)
            del y
    except Exception:  # a network the dispatcher cannot trace; the estimate must do
        return leaf
    measured = (counter.peak + x.numel() * x.element_size()) / (side * side)
    return max(measured, leaf)


def cpu_auto_tile(bytes_per_pixel: float, pad: int, multiple: int) -> int:
    """Tile core for the CPU: the largest square window within :data:`CPU_TILE_BUDGET`.

    Large windows matter on the CPU: every layer call has a fixed cost (thread start-up and
    hand-off), which small tiles pay many times over.
    """
    side = int(math.sqrt(CPU_TILE_BUDGET / max(bytes_per_pixel, 1.0)))
    tile = (side - 2 * pad) // 64 * 64
    return round_up(int(min(max(tile, CPU_MIN_TILE), MAX_AUTO_TILE)), multiple)


__all__ = [
    "CPU_MIN_TILE",
    "CPU_TILE_BUDGET",
    "CUDA_MEMORY_FRACTION",
    "MAX_AUTO_TILE",
    "MemoryModel",
    "activation_bytes_per_pixel",
    "cpu_auto_tile",
    "cuda_auto_tile",
    "measure_memory",
    "memory_model",
    "probe_key",
]
