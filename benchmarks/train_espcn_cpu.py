"""Train ESPCN x2 on the CPU for a few minutes, then score it on Set5 against bicubic.

    SISR_DATA=../shared/data python benchmarks/train_espcn_cpu.py [--seconds 290] [--threads 1]

Trains ``recipes/espcn_x2_cpu.yaml`` on ``$SISR_DATA/train/T91`` with the regular training
loop, stopped by wall time (``--seconds``, default just under 5 minutes), then evaluates
the exported weights on Set5 with :func:`sisr.evaluate.runner.evaluate` (Y-PSNR, border
2) next to the MATLAB-bicubic baseline (33.66 dB published). Prints the gain and the
training throughput in patches/s. Exit code 1 when the gain is below ``--target``.

``--threads``: torch intra-op threads. On a CPU shared with other jobs a single thread can
be much faster than a spinning OpenMP pool; the default keeps torch's own choice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_BICUBIC = 33.66


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "espcn_x2_cpu.yaml")
    ap.add_argument("--seconds", type=float, default=290.0, help="training wall-time budget")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--target", type=float, default=1.0, help="required gain over bicubic, dB")
    ap.add_argument("--out", type=Path, help="run folder (default: a temporary folder)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = ap.parse_args()

    data = os.environ.get("SISR_DATA")
    if not data or not (Path(data) / "train" / "T91").is_dir():
        print("SISR_DATA must point to the shared data folder (with train/T91)", file=sys.stderr)
        return 2

    import torch

    from sisr.evaluate.runner import evaluate, load_pairs
    from sisr.hub import load_model
    from sisr.train.config import load_recipe
    from sisr.train.run import train

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, ["log.progress=false", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        result = train(recipe, out, max_seconds=args.seconds)
        wall = time.perf_counter() - t0
        pairs = load_pairs(Path(data) / "benchmarks" / "Set5", 2)
        model = load_model(out / "model.safetensors")
        sr = evaluate(model, pairs, 2, device="cpu", dataset_name="Set5")
        bic = evaluate("bicubic", pairs, 2, dataset_name="Set5")

    gain = sr.psnr_y - bic.psnr_y
    print()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), recipe {args.recipe.name}"
    )
    print(
        f"training: {result.iterations} iterations in {result.seconds:.1f} s of training loop "
        f"(updates alone {result.step_seconds:.1f} s: "
        f"{result.iterations / max(result.step_seconds, 1e-9):.2f} it/s, "
        f"{result.patches_per_s:.1f} patches/s of {recipe.data.lr_patch} px LR); "
        f"whole run incl. setup/validation/export {wall:.1f} s"
    )
    print(f"Set5 x2 Y-PSNR  bicubic {bic.psnr_y:.2f} dB (published {PUBLISHED_BICUBIC})")
    print(f"Set5 x2 Y-PSNR  ESPCN   {sr.psnr_y:.2f} dB   SSIM {sr.ssim_y:.4f}")
    verdict = "PASS" if gain >= args.target else "FAIL"
    print(f"gain {gain:+.2f} dB (target >= +{args.target:.1f} dB): {verdict}")
    return 0 if gain >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
