"""Training batches of random (LR, HR) patches.

:class:`PatchBatcher` is the fast path: the whole decoded set lives in one flat uint8
tensor on the training device (:class:`~sisr.data.cache.DeviceSet`) and every step of
making a batch is a batched tensor op on that device, with the same code on CPU and
CUDA:

1. image choice (``sampling="area"``: probability proportional to the number of
   crop positions, i.e. every HR patch of the data set is equally likely, so small
   images are not over-sampled; ``"uniform"``: every usable image equally likely,
   BasicSR/EDSR style);
2. crop position uniform over the valid positions of that image;
3. one of the 8 dihedral transforms (flips x 90-degree rotations) per sample when
   ``augment``; crop and transform are one gather from the flat tensor through a
   per-sample index grid, so the transform costs nothing extra;
4. LR from the HR patch (unless paired LR images are given):
   ``degradation="bicubic"`` is MATLAB ``imresize(hr_patch, 1/s, 'bicubic')`` on the
   uint8 patch, bit-exact and quantised to uint8 like a saved LR PNG (float imresize
   followed by rounding differs slightly because MATLAB rounds between the two 1-D
   passes). As in BasicSR's on-the-fly mode the patch itself is downscaled, so the
   LR patch's border pixels see replicated HR edges instead of the HR pixels beyond
   the patch; inside a 48-px LR patch only the outermost 1-2 pixels are affected.
   Other names (and aliases such as BD, DN) come from :data:`sisr.degrade.DEGRADATIONS`
   and run batched on the uint8 patches (JPEG goes through PIL on the CPU); random ones
   draw from a CPU generator seeded per batch.

Randomness is counter-based: batch ``n`` of rank ``r`` uses a private CPU
``torch.Generator`` seeded from ``(seed, r, n)``. The random numbers (a few per
sample) are drawn on the CPU, so CPU and CUDA batchers pick the same patches, and the
state is just the batch counter: :meth:`PatchBatcher.state_dict` restores the exact
sequence, and since all ranks advance in lockstep, rank 0's state is valid for
every rank.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sisr.data.cache import DecodedSet, DeviceSet
from sisr.errors import ConfigError

STATE_VERSION = 1
SAMPLINGS = ("area", "uniform")
_MASK64 = (1 << 64) - 1

# hr_u8 (B, 3, P, P), per-batch seed -> lr float32 (B, 3, p, p) in [0, 1]
DegradeFn = Callable[[Tensor, int], Tensor]


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def batch_seed(seed: int, rank: int, step: int) -> int:
    """Well-mixed 63-bit seed for batch ``step`` of ``rank`` (independent streams)."""
    x = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (rank & _MASK64)) ^ (step & _MASK64))
    return x >> 1


def dihedral_affine(d: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The 8 dihedral transforms of a square patch as affine source coordinates.

    d: (B,) int64 codes 0..7 (bit 2: transpose first, then bit 1: flip rows, bit 0: flip
    columns; 0 is the identity; see :func:`dihedral`). Returns (B,) int64 tensors
    ``r0, ri, rj, c0, ci, cj`` such that output pixel (i, j) reads the patch at row
    ``r0 + ri*i + rj*j`` and column ``c0 + ci*i + cj*j``.
    """
    flip_c, flip_r, trans = d & 1, (d >> 1) & 1, (d >> 2) & 1
    keep = 1 - trans
    # Without transpose: row = flip_r ? P-1-i : i, col = flip_c ? P-1-j : j.
    # With transpose the roles of i and j swap.
    r_sign, c_sign = 1 - 2 * flip_r, 1 - 2 * flip_c
    last = size - 1
    return (
        flip_c * last * trans + flip_r * last * keep,
        r_sign * keep,
        c_sign * trans,
        flip_r * last * trans + flip_c * last * keep,
        r_sign * trans,
        c_sign * keep,
    )


def dihedral(x: Tensor, d: int) -> Tensor:
    """Reference (unbatched) form of code ``d`` on (..., P, P), matching :func:`dihedral_grid`."""
    if d & 4:
        x = x.transpose(-2, -1)
    if d & 2:
        x = x.flip(-2)
    if d & 1:
        x = x.flip(-1)
    return x


def gather_patches(
    images: DeviceSet, idx: Tensor, y: Tensor, x: Tensor, d: Tensor, size: int
) -> Tensor:
    """Crop + dihedral transform of a batch in one gather from the flat tensor.

    idx, y, x, d: (B,) int64 on ``images.device`` (image index, top-left corner, code)
    -> (B, 3, size, size) uint8. Callers guarantee the crops lie inside the images.
    Every transform is affine in (i, j), so the flat source index of each output pixel
    is ``k + si*i + sj*j + c*plane``: one broadcast sum and one index_select.
    """
    r0, ri, rj, c0, ci, cj = dihedral_affine(d, size)
    w = images.widths[idx]
    plane = images.heights[idx] * w
    base = images.offsets[idx] + (y + r0) * w + x + c0
    si, sj = ri * w + ci, rj * w + cj
    # int32 arithmetic is several times faster on CPU; use it when every index fits.
    dt = torch.int32 if images.flat.numel() < 2**31 else torch.int64
    ar = torch.arange(size, device=idx.device, dtype=dt)
    chan = torch.arange(3, device=idx.device, dtype=dt).view(1, 3, 1, 1)
    start = base.to(dt).view(-1, 1, 1, 1) + chan * plane.to(dt).view(-1, 1, 1, 1)
    rows = start + si.to(dt).view(-1, 1, 1, 1) * ar.view(1, 1, size, 1)  # (B, 3, P, 1)
    index = rows + sj.to(dt).view(-1, 1, 1, 1) * ar.view(1, 1, 1, size)  # (B, 3, P, P)
    return images.flat.index_select(0, index.view(-1)).view(-1, 3, size, size)


class PatchBatcher:
    """Endless stream of random training batches, made with tensor ops on ``device``.

    ``next_batch() -> (lr, hr)``: float32 in [0, 1] on ``device``, lr (B, 3, p, p) and
    hr (B, 3, s*p, s*p) with ``B = batch_size`` (per rank), ``p = lr_patch``,
    ``s = scale``. ``images`` is moved to ``device`` once (pass a DeviceSet already
    there to share it). With ``lr_images`` (a set aligned with ``images``, e.g. DIV2K's
    LR folder) LR patches are cropped from it at the matching position and
    ``degradation`` is ignored. Images too small for one patch are skipped (their
    paths are in ``self.excluded``); ConfigError if none is left.
    """

    def __init__(
        self,
        images: DecodedSet | DeviceSet,
        *,
        scale: int,
        lr_patch: int,
        batch_size: int,
        degradation: str = "bicubic",
        augment: bool = True,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lr_images: DecodedSet | DeviceSet | None = None,
        sampling: str = "area",
    ) -> None:
        if scale < 1 or lr_patch < 1 or batch_size < 1:
            raise ConfigError(
                f"scale, lr_patch and batch_size must be >= 1, got {scale}, {lr_patch}, {batch_size}"
            )
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in 0..{world_size - 1}")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling {sampling!r}; known: {', '.join(SAMPLINGS)}")
        self.device = torch.device(device)
        self.scale = int(scale)
        self.lr_patch = int(lr_patch)
        self.hr_patch = self.scale * self.lr_patch
        self.batch_size = int(batch_size)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.sampling = sampling
        self.step = 0
        self.hr_set = images.to_device(self.device)
        self.lr_set = lr_images.to_device(self.device) if lr_images is not None else None
        self.paired = self.lr_set is not None
        self._degrade: DegradeFn | None = None
        if self.paired:
            self.degradation = "paired"
        else:
            self.degradation, self._degrade = _make_degradation(
                degradation, self.scale, self.lr_patch
            )
        self._ny, self._nx, self.excluded = self._positions()
        if sampling == "area":
            weights = self._ny.double() * self._nx.double()
        else:
            weights = (self._ny > 0).double()
        if not bool((weights > 0).any()):
            raise ConfigError(
                f"no training image is large enough for {self.hr_patch}x{self.hr_patch} HR "
                f"patches (scale {self.scale}, LR patch {self.lr_patch})"
            )
        self._weights = weights

    def _positions(self) -> tuple[Tensor, Tensor, list[str]]:
        """Number of valid top-left positions per image (on the grid crops are drawn on)."""
        p = self.lr_patch
        ny: list[int] = []
        nx: list[int] = []
        if self.lr_set is not None:
            if len(self.lr_set) != len(self.hr_set):
                raise ConfigError(
                    f"paired sets differ in length: {len(self.hr_set)} HR vs {len(self.lr_set)} LR"
                )
            s = self.scale
            for (_, hh, hw), (_, lh, lw), path in zip(
                self.hr_set.shapes, self.lr_set.shapes, self.hr_set.paths, strict=True
            ):
                # LR must be the HR size divided by the scale (HR may carry up to s-1
                # extra rows/columns): an LR of another scale would train on misaligned pairs.
                if (lh, lw) != (hh // s, hw // s):
                    raise ConfigError(
                        f"{path}: HR {hw}x{hh} does not match its LR {lw}x{lh} at x{s} "
                        f"(expected LR {hw // s}x{hh // s})"
                    )
                ny.append(lh - p + 1)
                nx.append(lw - p + 1)
        else:
            for _, h, w in self.hr_set.shapes:
                ny.append(h - self.hr_patch + 1)
                nx.append(w - self.hr_patch + 1)
        nyt = torch.tensor(ny, dtype=torch.int64).clamp_min(0)
        nxt = torch.tensor(nx, dtype=torch.int64).clamp_min(0)
        bad = ((nyt == 0) | (nxt == 0)).tolist()
        nyt[torch.tensor(bad)] = 0
        nxt[torch.tensor(bad)] = 0
        return nyt, nxt, [p_ for p_, b in zip(self.hr_set.paths, bad, strict=True) if b]

    def _draw(self, step: int) -> tuple[Tensor, int]:
        """Per-sample (idx, y, x, d) as a (4, B) int64 CPU tensor, and a degradation seed."""
        g = torch.Generator().manual_seed(batch_seed(self.seed, self.rank, step))
        b = self.batch_size
        idx = torch.multinomial(self._weights, b, replacement=True, generator=g)
        u = torch.rand(2, b, generator=g, dtype=torch.float64)
        ny, nx = self._ny[idx], self._nx[idx]
        y = torch.minimum((u[0] * ny).long(), ny - 1)
        x = torch.minimum((u[1] * nx).long(), nx - 1)
        d = torch.randint(0, 8, (b,), generator=g)
        if not self.augment:
            d.zero_()
        deg_seed = int(torch.randint(0, 2**62, (1,), generator=g))
        return torch.stack([idx, y, x, d]), deg_seed

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """The next (lr, hr) pair: float32 in [0, 1] on ``device``."""
        draws, deg_seed = self._draw(self.step)
        self.step += 1
        idx, y, x, d = draws.to(self.device, non_blocking=True).unbind(0)
        if self.lr_set is not None:
            s = self.scale
            hr_u8 = gather_patches(self.hr_set, idx, y * s, x * s, d, self.hr_patch)
            lr = gather_patches(self.lr_set, idx, y, x, d, self.lr_patch).float().div_(255.0)
        else:
            hr_u8 = gather_patches(self.hr_set, idx, y, x, d, self.hr_patch)
            assert self._degrade is not None
            lr = self._degrade(hr_u8, deg_seed)
        return lr, hr_u8.float().div_(255.0)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact batch sequence (JSON-serialisable)."""
        return _state_common(self, "patch", len(self.hr_set))

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Continue from ``state``; with ``strict`` the settings that shape the stream must
        match (rank and world size may differ: the counter is shared by all ranks)."""
        _load_common(self, state, strict)


_STRICT_KEYS = (
    "seed",
    "scale",
    "lr_patch",
    "batch_size",
    "degradation",
    "augment",
    "sampling",
    "num_images",
)


def _state_common(
    obj: PatchBatcher | PlainLoaderBatcher, kind: str, num_images: int
) -> dict[str, Any]:
    """The batch-stream position plus every setting that shapes the stream."""
    return {
        "version": STATE_VERSION,
        "kind": kind,
        "step": obj.step,
        "rank": obj.rank,
        "world_size": obj.world_size,
        **{k: getattr(obj, k) for k in _STRICT_KEYS if k != "num_images"},
        "num_images": num_images,
    }


def _load_common(
    obj: PatchBatcher | PlainLoaderBatcher, state: dict[str, Any], strict: bool
) -> None:
    if state.get("version") != STATE_VERSION or state.get("kind") != obj.state_dict()["kind"]:
        raise ConfigError(
            f"batcher state has version/kind {state.get('version')}/{state.get('kind')}, "
            f"expected {STATE_VERSION}/{obj.state_dict()['kind']}"
        )
    if strict:
        mine = obj.state_dict()
        diff = [
            f"{k}: saved {state.get(k)!r}, now {mine[k]!r}"
            for k in _STRICT_KEYS
            if state.get(k) != mine[k]
        ]
        if diff:
            raise ConfigError("cannot resume the data stream exactly; " + "; ".join(diff))
    step = int(state["step"])
    if step < 0:
        raise ConfigError(f"batcher state has a negative step {step}")
    obj.step = step
    if isinstance(obj, PlainLoaderBatcher):
        obj._it = None


def _make_degradation(name: str, scale: int, lr_patch: int) -> tuple[str, DegradeFn]:
    """(canonical name, ``f(hr_u8 (B, 3, P, P), seed) -> lr float32 (B, 3, p, p)``)."""
    from sisr.degrade import get_degradation, imresize_uint8

    try:
        deg = get_degradation(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    p = lr_patch
    if deg.name == "bicubic":

        def bicubic(hr_u8: Tensor, seed: int) -> Tensor:
            # Same as the registry's bicubic, but size= rather than scale=1/s so that the
            # LR patch is always p x p (ceil(s * p * fl(1/s)) can exceed p).
            return imresize_uint8(hr_u8, size=(p, p)).float().div_(255.0)

        return deg.name, bicubic

    def registered(hr_u8: Tensor, seed: int) -> Tensor:
        # A seeded CPU generator: the same noise for CPU and CUDA batches, and the state is
        # just the batch counter (the registry's random ops draw on the generator's device).
        gen = torch.Generator().manual_seed(seed) if deg.random else None
        lr = deg.apply(hr_u8, scale, gen)
        if lr.shape[-2:] != (p, p):
            raise ConfigError(
                f"degradation {deg.name!r} made {tuple(lr.shape[-2:])} LR patches from "
                f"{tuple(hr_u8.shape[-2:])} HR patches, expected {(p, p)}"
            )
        return lr.to(hr_u8.device).float().div_(255.0)

    return deg.name, registered


class _RandomPatches(torch.utils.data.Dataset):
    """Sample ``k`` of the plain loader: one random patch, made with numpy on the CPU."""

    def __init__(self, batcher: PlainLoaderBatcher) -> None:
        self.hr = batcher.hr_decoded
        self.lr = batcher.lr_decoded
        self.seed, self.rank = batcher.seed, batcher.rank
        self.scale, self.lr_patch, self.augment = batcher.scale, batcher.lr_patch, batcher.augment
        w = batcher._weights.numpy()
        self.p = w / w.sum()
        self.ny, self.nx = batcher._ny.numpy(), batcher._nx.numpy()

    def __len__(self) -> int:  # the sampler is endless; any large number will do
        return 2**62

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        from sisr.degrade import imresize_uint8

        rng = np.random.default_rng([self.seed, self.rank, k])
        i = int(rng.choice(len(self.p), p=self.p))
        y, x = int(rng.integers(self.ny[i])), int(rng.integers(self.nx[i]))
        d = int(rng.integers(8)) if self.augment else 0
        s, p = self.scale, self.lr_patch
        if self.lr is not None:
            hr = self.hr.image_np(i)[:, s * y : s * (y + p), s * x : s * (x + p)]
            lr = self.lr.image_np(i)[:, y : y + p, x : x + p]
            lr_t = dihedral(torch.from_numpy(np.ascontiguousarray(lr)), d)
        else:
            hr = self.hr.image_np(i)[:, y : y + s * p, x : x + s * p]
            lr_t = None
        hr_t = dihedral(torch.from_numpy(np.ascontiguousarray(hr)), d).contiguous()
        if lr_t is None:
            lr_t = imresize_uint8(hr_t, size=(p, p))
        # Float conversion in the worker, as the usual per-sample pipelines do.
        return lr_t.float().div_(255.0), hr_t.float().div_(255.0)


class _CountFrom(torch.utils.data.Sampler[int]):
    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


_SHARED_ATTRS = (
    "scale",
    "lr_patch",
    "hr_patch",
    "batch_size",
    "augment",
    "seed",
    "rank",
    "world_size",
    "sampling",
    "degradation",
    "excluded",
    "_weights",
    "_ny",
    "_nx",
)


class PlainLoaderBatcher:
    """The plain baseline: a torch DataLoader of per-sample numpy crops (for comparison).

    Same constructor (plus ``num_workers``) and ``next_batch``/``state_dict`` interface as
    :class:`PatchBatcher`; only ``degradation="bicubic"`` or paired LR. Each sample is
    cropped and augmented in a worker from the memory-mapped :class:`DecodedSet`,
    converted to float32, collated, pinned and copied to ``device``. Sample ``k`` is
    seeded from ``(seed, rank, k)`` so the stream is deterministic and resumable.
    """

    def __init__(
        self,
        images: DecodedSet,
        *,
        scale: int,
        lr_patch: int,
        batch_size: int,
        degradation: str = "bicubic",
        augment: bool = True,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lr_images: DecodedSet | None = None,
        sampling: str = "area",
        num_workers: int = 4,
    ) -> None:
        if degradation != "bicubic" and lr_images is None:
            raise ConfigError("the plain loader supports only degradation 'bicubic'")
        # Reuse PatchBatcher's validation and position bookkeeping (CPU, zero-copy).
        ref = PatchBatcher(
            images,
            scale=scale,
            lr_patch=lr_patch,
            batch_size=batch_size,
            augment=augment,
            seed=seed,
            rank=rank,
            world_size=world_size,
            lr_images=lr_images,
            sampling=sampling,
        )
        for k in _SHARED_ATTRS:
            setattr(self, k, getattr(ref, k))
        self.hr_decoded = images
        self.lr_decoded = lr_images
        self.num_images = len(images)
        self.device = torch.device(device)
        self.num_workers = int(num_workers)
        self.step = 0
        self._it: Iterator[tuple[Tensor, Tensor]] | None = None
        self._dataset = _RandomPatches(self)

    def _iterator(self) -> Iterator[tuple[Tensor, Tensor]]:
        loader = torch.utils.data.DataLoader(
            self._dataset,
            batch_size=self.batch_size,
            sampler=_CountFrom(self.step * self.batch_size),
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if self.num_workers else None,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=4 if self.num_workers else None,
        )
        return iter(loader)

    def next_batch(self) -> tuple[Tensor, Tensor]:
        if self._it is None:
            self._it = self._iterator()
        lr, hr = next(self._it)
        self.step += 1
        return lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        return _state_common(self, "plain", self.num_images)

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        _load_common(self, state, strict)
