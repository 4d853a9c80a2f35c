"""Peak memory and exit status of `sisr upscale` / `sisr convert` given hostile weights files.

Issue 12: from the shipped ``espcn-x2`` weights, files whose metadata asks for a huge
network (``features=[8000, 8000]`` and ``[200000, 200000]``, about 107 KB each), one whose
hparams are in range but do not match the tensors (``[1000, 1000]``), one with a NaN weight
and one with int64 tensors.

Hardening round 2 (small on disk, huge in memory): ESPCN tensors stored with zero strides
(zip and legacy ``torch.save``, ~3 KB for 2.2 GB), the same converted with ``sisr convert``,
a deflate bomb (1.4 GB of zeros in ~1.4 MB), a storage declaring 2 GB over a 16-byte entry
(zip and legacy), a 2 KB pickle of lists shared 8 ways 20 deep (with a class, the inert
path), a tensor re-pointed by BUILD (``Tensor.__setstate__`` -> ``set_``, a 4 TB zero-stride
view), lists nested 100 000 deep, a memo index of 4e9 (the C unpickler sizes its memo by
it), a pickle of 2 million objects and one of 500 000 dicts (just under the object limit,
so read in full), detected hparams out of range (``features=1100`` from a
``.pth``), and a bicubic safetensors with ``scale: 1000``.

Runs each command in a fresh subprocess (one at a time, each under a wrapper process whose
``getrusage(RUSAGE_CHILDREN)`` is that run's peak) and prints the exit status, the number
of stderr lines, the peak RSS and the first line of the message. Exit status 1 when any
case does not exit 2 with one line, writes an output, or peaks over ``--limit-mb`` (400).

    python benchmarks/hostile_weights_rss.py
"""

from __future__ import annotations

import argparse
import json
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src/sisr/hub/weights/espcn-x2.safetensors"
sys.path.insert(0, str(ROOT))  # tests.hub.craft: hand-made torch.save files

from tests.hub.craft import (  # noqa: E402
    Archive,
    StorageRef,
    TensorRef,
    bicubic_weights,
    dumps,
    espcn_state,
    nested_pickle,
    shared_lists,
    write_legacy,
)


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
    cases.update(round2_cases(folder))
    return cases


def _deflate_bomb(path: Path, nbytes: int) -> Path:
    """A zip checkpoint whose one float32 storage is ``nbytes`` of deflated zeros."""
    n = nbytes // 4
    pkl = dumps({"body.0.weight": TensorRef(StorageRef("0", n), (n,), (1,))})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
        with z.open("archive/data/0", "w", force_zip64=True) as entry:
            chunk = bytes(1 << 24)
            for _ in range(nbytes // len(chunk)):
                entry.write(chunk)
    return path


def round2_cases(folder: Path) -> dict[str, Path]:
    """Files whose sizes on disk say nothing about what they ask of memory."""
    cases: dict[str, Path] = {}
    zero = espcn_state(8000, torch.zeros(1))
    cases["zero strides (zip)"] = folder / "zero.pth"
    torch.save(zero, cases["zero strides (zip)"])
    cases["zero strides (legacy)"] = folder / "zero_legacy.pth"
    torch.save(zero, cases["zero strides (legacy)"], _use_new_zipfile_serialization=False)
    cases["convert: zero strides"] = cases["zero strides (zip)"]
    cases["deflate bomb 1.4 GB"] = _deflate_bomb(folder / "deflate.pth", 1400 << 20)
    liar = {"w": TensorRef(StorageRef("0", 500_000_000), (4,), (1,))}
    cases["storage > entry (zip)"] = Archive(obj=liar, data={"0": bytes(16)}).write(
        folder / "liar.pth"
    )
    cases["storage > data (legacy)"] = write_legacy(
        folder / "liar_legacy.pth", liar, {"0": bytes(16)}
    )
    cases["shared lists 8x20"] = folder / "shared.pth"
    torch.save(
        {"hist": shared_lists(8, 20), "args": argparse.Namespace(lr=1e-4)},
        cases["shared lists 8x20"],
    )
    cases["nested 100000 deep"] = Archive(pickle_bytes=nested_pickle(100_000)).write(
        folder / "deep.pth"
    )
    one = StorageRef("0", 1)
    state = (TensorRef(one, (1,), (1,)), 0, (1 << 20, 1 << 20), (0, 0))  # Tensor.set_ args
    cases["re-pointed by BUILD"] = Archive(
        obj={"w": TensorRef(one, (1,), (1,), state=state)}, data={"0": bytes(4)}
    ).write(folder / "repoint.pth")
    memo = b"\x80\x02N" + b"r" + struct.pack("<I", 0xFFFFFFF0) + b"."
    cases["memo index 4e9"] = Archive(pickle_bytes=memo).write(folder / "memo.pth")
    many = pickle.dumps([[float(i)] for i in range(1_000_000)], protocol=2)
    cases["2M objects"] = Archive(pickle_bytes=many).write(folder / "many.pth")
    # Just under the object limit, so read in full: what the limit lets a file cost.
    dicts = b"\x80\x02](" + b"}" * 499_990 + b"e."
    cases["500k dicts (at limit)"] = Archive(pickle_bytes=dicts).write(folder / "dicts.pth")
    wide = espcn_state(8)
    wide["body.0.weight"] = torch.randn(1100, 3, 5, 5) * 0.01
    wide["body.0.bias"] = torch.zeros(1100)
    wide["body.2.weight"] = torch.randn(8, 1100, 3, 3) * 0.01
    cases["detected features=1100"] = folder / "wide.pth"
    torch.save(wide, cases["detected features=1100"])
    cases["bicubic scale 1000"] = bicubic_weights(folder / "bicubic.safetensors", 1000)
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
            out = folder / "out.png"
            if name.startswith("convert:"):
                out = folder / "out.safetensors"
                cmd = [sys.executable, "-m", "sisr", "convert", str(path), str(out)]
            else:
                cmd = [sys.executable, "-m", "sisr", "upscale", "-q", "-i", str(folder / "in.png")]
                cmd += ["-o", str(out), "-n", str(path)]
            proc, peak_mb = run_measured(cmd)
            lines = proc.stderr.strip().splitlines()
            good = (
                proc.returncode == 2
                and len(lines) == 1
                and peak_mb < args.limit_mb
                and not out.exists()
            )
            ok &= good
            first = (lines[0] if lines else "")[:110]
            flag = "" if good else " FAIL"
            print(f"{name:24s} {proc.returncode:4d} {len(lines):5d} {peak_mb:11.0f}{flag}  {first}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
