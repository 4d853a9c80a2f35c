"""Peak memory and exit status of `sisr upscale` given hostile weights files (issue 12).

Builds, from the shipped ``espcn-x2`` weights, files whose metadata asks for a huge network
(``features=[8000, 8000]`` and ``[200000, 200000]``, about 107 KB each), one whose hparams
are in range but do not match the tensors (``[1000, 1000]``), one with a NaN weight and
one with int64 tensors. Runs ``sisr upscale`` on each in a fresh subprocess (one at a time,
each under a wrapper process whose ``getrusage(RUSAGE_CHILDREN)`` is that run's peak) and prints the exit
status, the number of stderr lines, the peak RSS and the first line of the message.
Exit status 1 when any case does not exit 2 with one line under ``--limit-mb`` (400).

    python benchmarks/hostile_weights_rss.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

SHIPPED = Path(__file__).resolve().parents[1] / "src/sisr/hub/weights/espcn-x2.safetensors"


def make_cases(folder: Path) -> dict[str, Path]:
    with safe_open(str(SHIPPED), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(SHIPPED))
    cases: dict[str, Path] = {}
    for n in (8000, 200_000, 1000):
        m = dict(meta)
        h = json.loads(m["hparams"])
        h["features"] = [n, n]
        m["hparams"] = json.dumps(h)
        cases[f"features=[{n},{n}]"] = folder / f"f{n}.safetensors"
        save_file(tensors, str(cases[f"features=[{n},{n}]"]), metadata=m)
    nan = {k: v.clone() for k, v in tensors.items()}
    nan["body.0.weight"][0, 0, 0, 0] = float("nan")
    cases["NaN weight"] = folder / "nan.safetensors"
    save_file(nan, str(cases["NaN weight"]), metadata=meta)
    cases["int64 tensors"] = folder / "int64.safetensors"
    save_file(
        {k: (v * 100).to(torch.int64) for k, v in tensors.items()},
        str(cases["int64 tensors"]),
        metadata=meta,
    )
    return cases


_WRAPPER = (
    "import resource, subprocess, sys; "
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(p.returncode)"
)


def run_measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``cmd`` under a fresh wrapper whose only child it is: the wrapper's
    RUSAGE_CHILDREN peak is then exactly ``cmd``'s peak RSS (Linux: KiB)."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    *lines, peak = proc.stderr.rstrip("\n").split("\n")
    proc.stderr = "\n".join(lines)
    return proc, int(peak) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit-mb", type=float, default=400.0)
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        from PIL import Image

        img = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / "in.png")
        print(f"{'case':24s} {'exit':>4s} {'lines':>5s} {'peak RSS MB':>11s}  message")
        for name, path in make_cases(folder).items():
            cmd = [sys.executable, "-m", "sisr", "upscale", "-q", "-i", str(folder / "in.png")]
            cmd += ["-o", str(folder / "out.png"), "-n", str(path)]
            proc, peak_mb = run_measured(cmd)
            lines = proc.stderr.strip().splitlines()
            good = (
                proc.returncode == 2
                and len(lines) == 1
                and peak_mb < args.limit_mb
                and not (folder / "out.png").exists()
            )
            ok &= good
            first = (lines[0] if lines else "")[:110]
            print(f"{name:24s} {proc.returncode:4d} {len(lines):5d} {peak_mb:11.0f}  {first}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
