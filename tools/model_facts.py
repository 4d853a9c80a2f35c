#!/usr/bin/env python3
"""Facts of named weights for the README table: parameters, MACs per output pixel and CPU
output megapixels/s in fp32 and bf16, measured side by side in one process.

    python tools/model_facts.py default-x2 default-x3 default-x4 fast-x2 fast-x3 fast-x4 \
        [--size 512] [--repeats 3] [--threads 2] -o FACTS.json

Timing: the Upscaler path (channels_last, in-place activations, no tiling) on a random
``size`` x ``size`` LR image, best of ``repeats`` after one warm-up, fp32 and bf16
alternating per repeat so load changes hit both alike. The JSON is
``{name: {preset, params, macs_per_output_pixel, mp_per_s, mp_per_s_bf16, train}}``
(``train``: the training compute recorded in the file's metadata), the ``--speed`` input of
``tools/make_table.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def training_compute(name: str) -> str:
    """``GPU 4.5 min`` / ``CPU 115 min + GPU 2.1 min`` from a shipped file's metadata."""
    from sisr.hub.names import WEIGHTS, shipped_path
    from sisr.hub.weights import read_metadata

    path = shipped_path(WEIGHTS[name])
    extra = (read_metadata(path).get("extra") or {}) if path is not None else {}
    parts = []
    if extra.get("cpu_minutes"):
        parts.append(f"CPU {float(extra['cpu_minutes']):.0f} min")
    if extra.get("gpu_minutes"):
        parts.append(f"GPU {float(extra['gpu_minutes']):.1f} min")
    return " + ".join(parts) or "-"


def facts(names: list[str], size: int, repeats: int) -> dict[str, dict[str, Any]]:
    import numpy as np
    import torch

    import sisr
    from sisr.archs.complexity import count_inference_params, macs_per_output_pixel
    from sisr.hub.names import WEIGHTS

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        ups = {p: sisr.load(name, device="cpu", precision=p, tile=0) for p in ("fp32", "bf16")}
        model = ups["fp32"].model
        best = {p: float("inf") for p in ups}
        for up in ups.values():
            up.upscale(img)  # warm-up (oneDNN primitive creation)
        for _ in range(repeats):
            for p, up in ups.items():
                t0 = time.perf_counter()
                up.upscale(img)
                best[p] = min(best[p], time.perf_counter() - t0)
        pixels = (size * model.scale) ** 2 / 1e6
        out[name] = {
            "preset": WEIGHTS[name].preset,
            "params": count_inference_params(model),
            "macs_per_output_pixel": round(macs_per_output_pixel(model)),
            "mp_per_s": round(pixels / best["fp32"], 3),
            "mp_per_s_bf16": round(pixels / best["bf16"], 3),
            "threads": torch.get_num_threads(),
            "train": training_compute(name),
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    table = facts(args.names, args.size, args.repeats)
    text = json.dumps(table, indent=1)
    if args.output is None:
        sys.stdout.write(text + "\n")
    else:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
