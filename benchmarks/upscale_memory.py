"""Peak memory of `sisr upscale` on a large image (default: 8000x6000 RGB, x2, CPU).

Generates a synthetic photo-like image (smooth gradients, a few textures, mild noise) in a
temporary folder, runs ``sisr upscale`` on it in a subprocess with the built-in default
model, and reports the child's peak resident memory (``getrusage(RUSAGE_CHILDREN)``), wall
time and the output size. Exit status 1 when the peak is above ``--limit-gib`` (4 GiB).

    python benchmarks/upscale_memory.py                # 8000x6000 -> 16000x12000
    python benchmarks/upscale_memory.py --width 2000 --height 1500 --json mem.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like HxWx3 uint8 image: gradients, sinusoidal textures and noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), dtype=np.uint8)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    block = 512
    for y0 in range(0, height, block):
        y = np.linspace(
            y0 / height,
            min(y0 + block, height) / height,
            min(block, height - y0),
            endpoint=False,
            dtype=np.float32,
        )[:, None]
        for c in range(3):
            v = 0.35 + 0.25 * np.sin(6.0 * x + 4.0 * y + c)  # broad gradients
            v = v + 0.12 * np.sin(180.0 * x * (1 + c) + 90.0 * y)  # fine texture
            v = v + 0.08 * np.sign(np.sin(40.0 * x - 25.0 * y * (c + 1)))  # hard edges
            v = v + rng.normal(0.0, 0.02, size=v.shape).astype(np.float32)
            out[y0 : y0 + v.shape[0], :, c] = np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--width", type=int, default=8000)
    ap.add_argument("--height", type=int, default=6000)
    ap.add_argument("--model", default="default")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tile", default="auto")
    ap.add_argument("--limit-gib", type=float, default=4.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)

    from sisr.io.image import write_pixels

    tmp = Path(tempfile.mkdtemp(prefix="sisr-membench-"))
    src, dst = tmp / "input.png", tmp / "output.png"
    t0 = time.perf_counter()
    write_pixels(src, synthetic_image(args.height, args.width), compress_level=1)
    print(
        f"input: {args.width}x{args.height} RGB, {src.stat().st_size / 2**20:.0f} MiB PNG "
        f"({time.perf_counter() - t0:.1f} s to generate)",
        file=sys.stderr,
    )
    cmd = [
        sys.executable,
        "-m",
        "sisr",
        "upscale",
        "-i",
        str(src),
        "-o",
        str(dst),
        "-n",
        args.model,
        "-s",
        str(args.scale),
        "--device",
        args.device,
        "--tile",
        args.tile,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rss_bytes = rss if platform.system() == "Darwin" else rss * 1024
    result = {
        "input": [args.width, args.height],
        "output": [args.width * args.scale, args.height * args.scale],
        "model": args.model,
        "scale": args.scale,
        "device": args.device,
        "tile": args.tile,
        "returncode": proc.returncode,
        "peak_rss_gib": round(rss_bytes / 2**30, 3),
        "wall_s": round(wall, 1),
        "output_mpx_per_s": round(args.width * args.height * args.scale**2 / 1e6 / wall, 2),
        "output_file_mib": round(dst.stat().st_size / 2**20, 1) if dst.exists() else None,
        "limit_gib": args.limit_gib,
    }
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    else:
        print(f"kept {tmp}", file=sys.stderr)
    ok = proc.returncode == 0 and result["peak_rss_gib"] < args.limit_gib
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
