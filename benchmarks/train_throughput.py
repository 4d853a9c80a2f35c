"""Training throughput: EDSR-baseline x2 iterations/s through the real training step.

    SISR_DATA=../shared/data python benchmarks/train_throughput.py [--threads N]
        [--cpu-iters 4] [--cuda-iters 200] [--workers 4 8] [--precision fp32 bf16]

Every measurement builds a :class:`sisr.train.loop.Trainer` from
``recipes/edsr_baseline_x2.yaml`` (batch 16, 48 px LR patches; validation and
checkpoints off) and times ``batcher.next_batch()`` + ``Trainer.step()`` — the exact
code ``sisr train`` runs, including the per-step loss sync of the NaN guard.

* CPU: the PatchBatcher (patches cut with tensor ops on the CPU).
* CUDA (when available), side by side: the decoded set on the GPU with the
  PatchBatcher (``data.on_device=true``), the PatchBatcher on the CPU with a copy per
  batch (``on_device=false``), and the PlainLoaderBatcher (a DataLoader with
  ``--workers`` processes, pinned memory), each at every ``--precision``. GPU
  utilisation is sampled during the timed loop with ``torch.cuda.utilization()``
  (needs pynvml) or ``nvidia-smi``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "edsr_baseline_x2.yaml"


class UtilSampler:
    """Samples GPU utilisation (%) every ``period`` seconds in a background thread."""

    def __init__(self, device_index: int, period: float = 0.2) -> None:
        self.index = device_index
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.source = self._probe()

    def _probe(self) -> str | None:
        import torch

        try:
            torch.cuda.utilization(self.index)
            return "torch.cuda.utilization"
        except Exception:  # no pynvml / no permission
            pass
        if shutil.which("nvidia-smi") and self._smi() is not None:
            return "nvidia-smi"
        return None

    def _smi(self) -> float | None:
        try:
            out = subprocess.run(
                [
                    "nvidia-smi",
                    f"--id={self.index}",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=5,
            )
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def _read(self) -> float | None:
        import torch

        if self.source == "torch.cuda.utilization":
            return float(torch.cuda.utilization(self.index))
        if self.source == "nvidia-smi":
            return self._smi()
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = self._read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self) -> UtilSampler:
        if self.source is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> str:
        if self.source is None:
            return "n/a (no pynvml, no nvidia-smi)"
        if not self.samples:
            return "n/a (no samples)"
        return f"{statistics.mean(self.samples):.0f}% mean ({self.source})"


def measure(overrides: list[str], warmup: int, iters: int, gpu_util: bool) -> dict[str, Any]:
    import torch

    from sisr.train.config import load_recipe
    from sisr.train.loop import Trainer

    recipe = load_recipe(
        RECIPE,
        [
            "val.datasets=[]",
            "checkpoint.interval=0",
            "log.progress=false",
            "log.tensorboard=false",
            *overrides,
        ],
    )
    trainer = Trainer(recipe, None)
    device = trainer.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        trainer.step(*trainer.batcher.next_batch())
    sync()
    sampler = UtilSampler(device.index or 0) if gpu_util and device.type == "cuda" else None
    t0 = time.perf_counter()
    if sampler is not None:
        with sampler:
            for _ in range(iters):
                trainer.step(*trainer.batcher.next_batch())
            sync()
    else:
        for _ in range(iters):
            trainer.step(*trainer.batcher.next_batch())
        sync()
    dt = time.perf_counter() - t0
    its = iters / dt
    return {
        "its": its,
        "patches": its * recipe.data.batch_size,
        "util": sampler.summary() if sampler is not None else "",
        "mem": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--cpu-iters", type=int, default=4)
    ap.add_argument("--cpu-warmup", type=int, default=1)
    ap.add_argument("--cuda-iters", type=int, default=200)
    ap.add_argument("--cuda-warmup", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="*", default=[4, 8], help="plain loader workers")
    ap.add_argument(
        "--precision", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"]
    )
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = ap.parse_args()

    data = os.environ.get("SISR_DATA")
    if not data or not (Path(data) / "train" / "T91").is_dir():
        print("SISR_DATA must point to the shared data folder (with train/)", file=sys.stderr)
        return 2

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}; EDSR-baseline x2, batch 16, 48 px LR patches (96 px HR)")
    rows: list[tuple[str, dict[str, Any]]] = []
    if not args.skip_cpu:
        res = measure(["device=cpu", *args.overrides], args.cpu_warmup, args.cpu_iters, False)
        label = f"cpu fp32, {torch.get_num_threads()} thread(s), PatchBatcher"
        rows.append((label, res))
        print(f"{label:60s} {res['its']:8.3f} it/s {res['patches']:9.1f} patches/s", flush=True)
    if torch.cuda.is_available():
        print(f"cuda: {torch.cuda.get_device_name(0)}")
        for prec in args.precision:
            common = ["device=cuda", f"precision={prec}", "channels_last=true", *args.overrides]
            variants = [
                ("PatchBatcher, data on GPU", ["data.loader=patch", "data.on_device=true"]),
                ("PatchBatcher on CPU + copy", ["data.loader=patch", "data.on_device=false"]),
            ] + [
                (f"PlainLoaderBatcher, {w} workers", ["data.loader=plain", f"data.workers={w}"])
                for w in args.workers
            ]
            for name, extra in variants:
                res = measure([*common, *extra], args.cuda_warmup, args.cuda_iters, True)
                label = f"cuda {prec}, {name}"
                rows.append((label, res))
                print(
                    f"{label:60s} {res['its']:8.2f} it/s {res['patches']:9.1f} patches/s  "
                    f"GPU util {res['util']}  peak mem {res['mem']:.2f} GiB",
                    flush=True,
                )
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    else:
        print("cuda: not available (CPU-only torch or no GPU): GPU rows skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
