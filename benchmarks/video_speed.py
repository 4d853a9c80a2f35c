"""Video throughput: frames/s of `sisr upscale` on a 640x360 clip at x2, against the same
model on the same frames as PNG files (what decoding and encoding the video costs).

    python benchmarks/video_speed.py [--frames 48] [-n default-x2 -n fast-x2]

The clip is made here (H.264, 25 fps, moving bars and noise so the encoder has work, an AAC
track). Three numbers per model, side by side in one run: the network alone on the decoded
frames (arrays in memory), `sisr upscale` of the clip to H.264 (decode, upscale, encode,
audio copied), and `sisr upscale` of the frames as a folder of PNGs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, size: tuple[int, int] = (360, 640)) -> list[np.ndarray]:
    import av

    h, w = size
    rng = np.random.default_rng(0)
    out = []
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            x = rng.integers(60, 90, (h, w, 3), dtype=np.uint8)
            x[:, (8 * i) % w : (8 * i) % w + 40] = (240, 200, 40)
            out.append(x)
            for p in v.encode(av.VideoFrame.from_ndarray(x, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("-n", "--model", action="append", help="default: default-x2 and fast-x2")
    args = ap.parse_args()

    from PIL import Image

    from sisr.cli.main import main as sisr
    from sisr.infer import Upscaler

    models = args.model or ["default-x2", "fast-x2"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frames = make_clip(root / "clip.mp4", args.frames)
        (root / "png").mkdir()
        for i, f in enumerate(frames):
            Image.fromarray(f).save(root / "png" / f"{i:05d}.png", compress_level=1)
        print(f"{args.frames} frames of 640x360 at x2 (frames/s)")
        print(f"{'model':14} {'network only':>13} {'video -> video':>15} {'PNG -> PNG':>11}")
        for name in models:
            up = Upscaler.from_name(name, device="cpu", progress=False)
            up.upscale_arrays(frames[0])  # warm-up (tile probe, first-call costs)
            t0 = time.perf_counter()
            for f in frames:
                up.upscale_arrays(f)
            net = args.frames / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            code = sisr(
                [
                    "upscale",
                    "-q",
                    "-n",
                    name,
                    "-i",
                    str(root / "clip.mp4"),
                    "-o",
                    str(root / "out.mp4"),
                ]
            )
            vid = args.frames / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            code |= sisr(
                ["upscale", "-q", "-n", name, "-i", str(root / "png"), "-o", f"{root / 'out'}/"]
            )
            png = args.frames / (time.perf_counter() - t0)
            if code:
                print(f"{name}: sisr upscale failed", file=sys.stderr)
                return 1
            print(f"{name:14} {net:13.2f} {vid:15.2f} {png:11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
