"""Training-data throughput: patches/s of the batched PatchBatcher vs the plain DataLoader.

EDSR x2 settings (batch 16, 48-px LR patches, 96-px HR) over ``$SISR_DATA/train/T91``,
on the CPU and, when available, on CUDA. Usage::

    SISR_DATA=../shared/data python benchmarks/data_pipeline.py [--threads N] [--workers 0 2]

The decoded cache is built on first use (under ``--cache-dir``, default the sisr cache).
Each measurement runs ``--warmup`` batches, then times ``--batches`` batches (CUDA timings
synchronise at the end).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sisr.data import PatchBatcher, PlainLoaderBatcher, hr_folders, open_decoded


def _time(next_batch: Callable[[], object], device: torch.device, warmup: int, n: int) -> float:
    """Seconds per batch."""
    for _ in range(warmup):
        next_batch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        next_batch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="HR folder (default T91)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--lr-patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="plain loader")
    parser.add_argument("--degradation", default="bicubic")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or Path(os.environ.get("SISR_DATA", "../shared/data")) / "train" / "T91"
    src = hr_folders(data)
    t0 = time.perf_counter()
    images = open_decoded(src, cache_dir=args.cache_dir, progress=True)
    print(
        f"data: {data} ({len(images)} images, {images.nbytes / 2**20:.1f} MiB decoded; "
        f"cache open {time.perf_counter() - t0:.2f} s at {images.folder})"
    )
    print(
        f"x{args.scale}, batch {args.batch}, LR patch {args.lr_patch}, {args.degradation}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    common = dict(scale=args.scale, lr_patch=args.lr_patch, batch_size=args.batch)
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        fast = PatchBatcher(images, device=device, degradation=args.degradation, **common)
        sec = _time(fast.next_batch, device, args.warmup, args.batches)
        print(
            f"{name:>24}  PatchBatcher (batched)        {args.batch / sec:10.0f} patches/s"
            f"  {sec * 1e3:7.2f} ms/batch"
        )
        if args.degradation != "bicubic":
            continue
        for workers in args.workers:
            plain = PlainLoaderBatcher(images, device=device, num_workers=workers, **common)
            sec = _time(plain.next_batch, device, args.warmup, args.batches)
            print(
                f"{name:>24}  PlainLoaderBatcher workers={workers:<2} {args.batch / sec:10.0f}"
                f" patches/s  {sec * 1e3:7.2f} ms/batch"
            )
            del plain


if __name__ == "__main__":
    main()
