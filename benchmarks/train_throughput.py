"""Training throughput: steps/s through the real training step, fp32 vs bf16, per preset.

    SISR_DATA=../shared/data python benchmarks/train_throughput.py [--threads N]
        [--presets espcn span-t fsrcnn edsr-baseline] [--cpu-seconds 6]
        [--cuda-iters 200] [--workers 4 8] [--precision fp32 bf16]
    SISR_DATA=../shared/data python benchmarks/train_throughput.py --parity 400

CPU rows, side by side in one run for each preset (x2, batch 16, 48 px LR patches, L1,
Adam): fp32 NCHW, fp32 channels_last and bf16 autocast + channels_last, plus the batch
making alone (``batcher.next_batch()``) so a data bottleneck shows. bf16 pays only on
CPUs with native bf16 units (AMX, AVX512-BF16); the header says which this CPU has.
``--parity N``: N equal iterations of ESPCN x2 from the same seed in fp32 and in bf16,
then Set5 Y-PSNR of both (the claim: bf16 training reaches fp32's PSNR within 0.05 dB).

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


def measure_cpu(
    preset: str, precision: str, channels_last: bool, seconds: float, overrides: list[str]
) -> dict[str, Any]:
    """Steps/s of ``preset`` on the CPU for about ``seconds`` (after two warm-up steps)."""
    from sisr.train.config import load_recipe
    from sisr.train.loop import Trainer

    recipe = load_recipe(
        RECIPE,
        [
            f"model.preset={preset}",
            "val.datasets=[]",
            "checkpoint.interval=0",
            "log.progress=false",
            "log.tensorboard=false",
            "device=cpu",
            f"precision={precision}",
            f"channels_last={str(channels_last).lower()}",
            *overrides,
        ],
    )
    trainer = Trainer(recipe, None)
    for _ in range(2):
        trainer.step(*trainer.batcher.next_batch())
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        trainer.step(*trainer.batcher.next_batch())
        n += 1
    its = n / (time.perf_counter() - t0)
    m, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        trainer.batcher.next_batch()
        m += 1
    return {
        "its": its,
        "patches": its * recipe.data.batch_size,
        "batches": m / (time.perf_counter() - t0),
    }


def cpu_table(presets: list[str], seconds: float, overrides: list[str]) -> None:
    from sisr.infer.precision import cpu_bf16_support

    native = cpu_bf16_support() or "none (bf16 is emulated: expect it slower than fp32)"
    print(f"CPU native bf16: {native}")
    print(
        f"{'preset':16s} {'fp32 NCHW':>10s} {'fp32 CL':>10s} {'bf16 CL':>10s} "
        f"{'bf16/fp32':>9s} {'batches/s':>10s}   (steps/s; batch 16 x 48 px LR)"
    )
    for preset in presets:
        a = measure_cpu(preset, "fp32", False, seconds, overrides)
        b = measure_cpu(preset, "fp32", True, seconds, overrides)
        c = measure_cpu(preset, "bf16", True, seconds, overrides)
        best32 = max(a["its"], b["its"])
        print(
            f"{preset:16s} {a['its']:10.2f} {b['its']:10.2f} {c['its']:10.2f} "
            f"{c['its'] / best32:8.2f}x {a['batches']:10.0f}",
            flush=True,
        )


def parity(iterations: int) -> None:
    """Equal-iteration ESPCN x2 runs in fp32 and bf16; Set5 Y-PSNR of both."""
    import tempfile

    from sisr.train.config import load_recipe
    from sisr.train.loop import Trainer

    espcn = ROOT / "recipes" / "default_espcn_x2.yaml"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for prec in ("fp32", "bf16"):
            recipe = load_recipe(
                espcn,
                [
                    f"iterations={iterations}",
                    f"precision={prec}",
                    f"schedule.milestones=[{int(iterations * 0.65)},{int(iterations * 0.85)}]",
                    "val.datasets=[Set5]",
                    "val.interval=0",
                    "checkpoint.interval=0",
                    "log.progress=false",
                    "log.interval=1000000",
                    f"data.cache_dir={tmp}/cache",
                ],
            )
            t0 = time.perf_counter()
            res = Trainer(recipe, Path(tmp) / prec).run()
            psnr = next(iter(res.history[-1]["results"].values()))["psnr"]
            results[prec] = psnr
            print(
                f"ESPCN x2 {prec}: {iterations} iterations in {time.perf_counter() - t0:.0f} s, "
                f"Set5 Y-PSNR {psnr:.3f} dB",
                flush=True,
            )
    print(f"bf16 - fp32: {results['bf16'] - results['fp32']:+.3f} dB (claim: within 0.05)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument(
        "--presets", nargs="*", default=["espcn", "span-t", "span-s", "fsrcnn", "edsr-baseline"]
    )
    ap.add_argument("--cpu-seconds", type=float, default=6.0, help="timed seconds per CPU row")
    ap.add_argument("--parity", type=int, default=0, metavar="N", help="fp32 vs bf16 PSNR run")
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
    print(f"torch {torch.__version__}; {torch.get_num_threads()} CPU thread(s)")
    if args.parity:
        parity(args.parity)
        return 0
    rows: list[tuple[str, dict[str, Any]]] = []
    if not args.skip_cpu:
        cpu_table(args.presets, args.cpu_seconds, args.overrides)
    if torch.cuda.is_available():
        print(f"cuda: {torch.cuda.get_device_name(0)}; EDSR-baseline x2, batch 16, 48 px LR")
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
