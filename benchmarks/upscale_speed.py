"""Upscaling speed and quality: sisr's shipped models next to OpenCV's dnn_superres.

For every shipped model (``default-x2/x3/x4``, ESPCN) and every OpenCV peer model (ESPCN
and FSRCNN .pb graphs from ``$SISR_PEERS`` or ``../shared/peers/opencv_dnn_superres``), on
the CPU (and CUDA for sisr when available):

* throughput in output megapixels per second on the same synthetic photo-like LR image
  (``--size``, default 1000x1000 = 1 Mpx), uint8 in -> uint8 out for both, median of
  ``--repeats`` timed runs after a warm-up, same thread count (``--threads``);
* peak memory: each measurement runs in its own subprocess; we report its peak resident
  memory (and peak CUDA memory for CUDA runs);
* Set5 PSNR on Y (paper protocol: HR cropped to a multiple of the scale, LR by MATLAB
  bicubic, border = scale) for both, computed by the same code.

``--variants`` also times sisr's ESPCN in several execution settings (plain fp32, channels
last, torch.compile, batched tiles) to show what helps on this machine.

``--e2e [FOLDER]`` times whole folder runs instead (default: the first ``--e2e-files`` B100
images, x2, the default model): model only (decoded images in memory, no writing), the
``sisr upscale`` engine end to end with today's PNG settings (``--png-level`` default) and
with level 6 (what it wrote before), and a plain OpenCV loop (imread + dnn_superres ESPCN +
imwrite) on the same files; output MP/s, the ratio to model only, and total file sizes.

    pip install -e '.[bench]'
    python benchmarks/upscale_speed.py --json speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OPENCV_MODELS = {"espcn": "ESPCN_x{s}.pb", "fsrcnn": "FSRCNN_x{s}.pb"}


def peers_dir() -> Path:
    env = os.environ.get("SISR_PEERS")
    if env:
        p = Path(env)
        return p / "opencv_dnn_superres" if (p / "opencv_dnn_superres").is_dir() else p
    return REPO.parent / "shared" / "peers" / "opencv_dnn_superres"


def data_dir() -> Path:
    return Path(os.environ.get("SISR_DATA", REPO.parent / "shared" / "data"))


def synthetic(size: int) -> np.ndarray:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from upscale_memory import synthetic_image

    return synthetic_image(size, size, seed=1)


# --------------------------------------------------------------------------- engines


VARIANTS = ("plain", "contiguous", "no-inplace", "compile", "tile0", "tile256", "batch4", "bf16")


def make_sisr(name: str, scale: int, device: str, variant: str) -> Any:
    """A callable uint8 HxWx3 -> uint8 for a sisr model in an execution ``variant``:
    ``auto`` (the defaults), ``plain`` (NCHW, no in-place activations), ``contiguous``
    (NCHW), ``no-inplace``, ``compile`` (torch.compile, inductor with freezing),
    ``tile0`` / ``tile256`` (tile size), ``batch4`` (128-px tiles, 4 per pass), ``bf16``."""
    import torch

    import sisr
    from sisr.infer.precision import TileForward

    kw: dict[str, Any] = {"device": device, "progress": False}
    if variant in ("plain", "contiguous"):
        kw["channels_last"] = False
    elif variant.startswith("tile"):
        kw["tile"] = int(variant.removeprefix("tile"))
    elif variant.startswith("batch"):
        kw.update(tile=128, batch=int(variant.removeprefix("batch")))
    elif variant == "bf16":
        kw["precision"] = "bf16"
    up = sisr.load(name, scale=scale, **kw)
    if variant in ("plain", "no-inplace"):
        up._net = TileForward(up.model, up.dtype)  # the module as defined, no in-place ops
    if variant == "compile":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # fold weights, fuse conv + activation
        up._net.model = torch.compile(up._net.model, dynamic=False)
    return up.upscale


def dnn_superres(arch: str, scale: int) -> tuple[Any | None, str]:
    """OpenCV's dnn_superres model ``arch`` x``scale``, read and run once on a tiny image,
    or None and why not (no OpenCV, no contrib module, no peer file, or a file this OpenCV
    cannot read: 5.x fails on the TensorFlow .pb graphs)."""
    try:
        import cv2
    except ImportError:
        return None, "OpenCV not installed: pip install -e '.[bench]'"
    if not hasattr(cv2, "dnn_superres"):
        return None, f"OpenCV {cv2.__version__} has no dnn_superres (needs opencv-contrib)"
    pb = peers_dir() / OPENCV_MODELS[arch].format(s=scale)
    if not pb.is_file():
        return None, f"{arch} x{scale}: no such file {pb}"
    try:
        sr = cv2.dnn_superres.DnnSuperResImpl_create()
        sr.readModel(str(pb))
        sr.setModel(arch, scale)
        sr.upsample(np.zeros((8, 8, 3), np.uint8))  # some failures only show when run
    except cv2.error as exc:
        why = " ".join(str(exc).split())[:300]
        return None, f"OpenCV {cv2.__version__} cannot use {pb.name}: {why}"
    return sr, ""


def unavailable(why: str) -> None:
    print(f"opencv dnn_superres: unavailable ({why})", file=sys.stderr)


def make_opencv(arch: str, scale: int) -> Any:
    sr, why = dnn_superres(arch, scale)
    if sr is None:
        raise RuntimeError(f"opencv dnn_superres: unavailable ({why})")

    def run(rgb: np.ndarray) -> np.ndarray:
        return sr.upsample(rgb[..., ::-1].copy())[..., ::-1]

    return run


def opencv_specs(scales: list[int]) -> list[dict[str, Any]]:
    """Benchmark specs of the OpenCV peers usable here; a line for each one that is not
    (the run goes on without it)."""
    specs = []
    for s in scales:
        for arch in OPENCV_MODELS:
            sr, why = dnn_superres(arch, s)
            if sr is None:
                unavailable(why)
            else:
                specs.append({"engine": "opencv", "arch": arch, "scale": s, "device": "cpu"})
    return specs


def make_engine(spec: dict[str, Any]) -> Any:
    if spec["engine"] == "opencv":
        return make_opencv(spec["arch"], spec["scale"])
    return make_sisr(spec["name"], spec["scale"], spec["device"], spec.get("variant", "auto"))


# --------------------------------------------------------------------------- worker


def worker(spec: dict[str, Any], size: int, repeats: int, threads: int) -> dict[str, Any]:
    """Time one engine in this (fresh) process; returns throughput and memory."""
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass
    image = synthetic(size)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fn = make_engine(spec)
    cuda = spec.get("device", "cpu").startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    out = fn(image)  # warm-up (and compile, where asked)
    sync()
    warm = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(image)
        sync()
        times.append(time.perf_counter() - t0)
    s = spec["scale"]
    assert out.shape == (size * s, size * s, 3), out.shape
    mpx = size * size * s * s / 1e6
    res = {
        **spec,
        "threads": threads,
        "input": f"{size}x{size}",
        "seconds_median": round(statistics.median(times), 4),
        "seconds_min": round(min(times), 4),
        "warmup_s": round(warm, 2),
        "out_mpx_per_s": round(mpx / min(times), 3),
        "out_mpx_per_s_median": round(mpx / statistics.median(times), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_model_mib": round(rss0),
    }
    if cuda:
        res["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return res


def paired(specs: list[dict[str, Any]], size: int, repeats: int, threads: int) -> dict[str, Any]:
    """Time several engines in one process, interleaved run by run, so that load from
    other processes hits them alike; returns each engine's best and median time."""
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass
    image = synthetic(size)
    fns = [make_engine(spec) for spec in specs]
    for fn in fns:
        fn(image)  # warm-up
    times: list[list[float]] = [[] for _ in specs]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(image)
            times[i].append(time.perf_counter() - t0)
    out = {}
    for spec, ts in zip(specs, times, strict=True):
        mpx = size * size * spec["scale"] ** 2 / 1e6
        out[label(spec)] = {
            "out_mpx_per_s": round(mpx / min(ts), 3),
            "out_mpx_per_s_median": round(mpx / statistics.median(ts), 3),
        }
    return out


def run_paired(specs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--paired",
        json.dumps(specs),
        "--size",
        str(args.size),
        "--repeats",
        str(args.paired_repeats),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_worker(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        json.dumps(spec),
        "--size",
        str(args.size),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "?"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- quality


def set5_psnr(specs: list[dict[str, Any]], threads: int) -> dict[str, float]:
    """Mean Set5 Y-PSNR (border = scale) of each engine, keyed by its label."""
    import torch

    from sisr.evaluate.runner import make_pairs, read_images
    from sisr.metrics import psnr_y

    torch.set_num_threads(threads)
    images = read_images(data_dir() / "benchmarks" / "Set5")
    out: dict[str, float] = {}
    for s in sorted({spec["scale"] for spec in specs}):
        pairs = make_pairs(images, s)
        for spec in (x for x in specs if x["scale"] == s):
            fn = make_engine({**spec, "device": "cpu", "variant": "auto"})
            scores = []
            for p in pairs:
                lr = p.lr.permute(1, 2, 0).numpy()
                sr = np.ascontiguousarray(fn(lr))
                sr_t = torch.from_numpy(sr).permute(2, 0, 1)
                scores.append(float(psnr_y(sr_t, p.hr, border=s)))
            out[label(spec)] = round(sum(scores) / len(scores), 3)
    return out


def label(spec: dict[str, Any]) -> str:
    if spec["engine"] == "opencv":
        return f"opencv {spec['arch']}-x{spec['scale']}"
    variant = f" [{spec['variant']}]" if spec.get("variant", "auto") != "auto" else ""
    return f"sisr {spec['name']}-x{spec['scale']}{variant}"


# --------------------------------------------------------------------------- end to end


def end_to_end(folder: Path, n_files: int, model: str, rounds: int) -> dict[str, Any]:
    """Folder throughput: model only vs the sisr engine end to end vs an OpenCV loop."""
    import shutil
    import tempfile

    import sisr
    from sisr.infer.runner import plan_jobs, run_jobs
    from sisr.io import read_native

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))
    files = files[:n_files]
    if not files:
        raise SystemExit(f"{folder}: no images")
    up = sisr.load(model, device="cpu", progress=False)
    s = up.scale
    tmp = Path(tempfile.mkdtemp(prefix="sisr-e2e-"))
    src = tmp / "in"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    images = [read_native(f) for f in sorted(src.iterdir())]
    out_mpx = sum(im.meta.width * im.meta.height * s * s for im in images) / 1e6
    cv_sr, why = dnn_superres("espcn", s)
    if cv_sr is None:
        unavailable(why)

    def model_only() -> None:
        for im in images:
            up.upscale_arrays(im.color, im.alpha)

    def engine(level: int | None, out: Path) -> Any:
        def go() -> None:
            shutil.rmtree(out, ignore_errors=True)
            summary = run_jobs(up, plan_jobs(src, out), progress=False, png_level=level)
            assert summary.ok, summary.failed

        return go

    def opencv_loop() -> None:
        import cv2

        out = tmp / "cv"
        out.mkdir(exist_ok=True)
        for f in sorted(src.iterdir()):
            cv2.imwrite(str(out / f.name), cv_sr.upsample(cv2.imread(str(f))))

    runs: dict[str, Any] = {
        "model only": model_only,
        "sisr upscale (png level 1, now)": engine(None, tmp / "new"),
        "sisr upscale (png level 6, before)": engine(6, tmp / "old"),
    }
    if cv_sr is not None:
        runs["opencv loop (imread+ESPCN+imwrite)"] = opencv_loop
    best: dict[str, float] = {k: float("inf") for k in runs}
    for _ in range(rounds):  # interleaved rounds, best of each
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)

    def size(folder_name: str) -> int:
        return sum(p.stat().st_size for p in (tmp / folder_name).iterdir())

    base = best["model only"]
    rows = {
        k: {
            "seconds": round(t, 3),
            "out_mpx_per_s": round(out_mpx / t, 3),
            "vs_model_only": round(base / t, 3),
        }
        for k, t in best.items()
    }
    sizes = {"now": size("new"), "before": size("old")}
    if cv_sr is not None:
        sizes["opencv"] = size("cv")
    old_px = [np.asarray(read_native(p).color) for p in sorted((tmp / "old").iterdir())]
    new_px = [np.asarray(read_native(p).color) for p in sorted((tmp / "new").iterdir())]
    same = all(np.array_equal(a, b) for a, b in zip(old_px, new_px, strict=True))
    shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{len(files)} files from {folder}, x{s} {model}, {out_mpx:.1f} output MP", file=sys.stderr
    )
    for k, r in rows.items():
        print(
            f"  {k:38s} {r['seconds']:7.2f} s  {r['out_mpx_per_s']:6.2f} MP/s  "
            f"{r['vs_model_only']:.2f}x model only",
            file=sys.stderr,
        )
    grow = sizes["now"] / sizes["before"] - 1
    print(
        f"  files: now {sizes['now'] / 1e6:.2f} MB, before {sizes['before'] / 1e6:.2f} MB "
        f"({grow:+.1%})"
        + (f", opencv {sizes['opencv'] / 1e6:.2f} MB" if "opencv" in sizes else "")
        + f"; pixels identical now vs before: {same}",
        file=sys.stderr,
    )
    return {
        "files": len(files),
        "folder": str(folder),
        "out_mpx": round(out_mpx, 2),
        "runs": rows,
        "bytes": sizes,
        "size_change": round(grow, 4),
        "pixels_identical": same,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=1000, help="LR side in pixels (1000 = 1 Mpx)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--no-psnr", action="store_true")
    ap.add_argument("--no-cuda", action="store_true")
    ap.add_argument("--variants", action="store_true", help="time sisr execution variants (x2)")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--paired-repeats", type=int, default=7, help="interleaved runs for the comparison"
    )
    ap.add_argument(
        "--e2e",
        nargs="?",
        const="",
        default=None,
        metavar="FOLDER",
        help="folder throughput end to end (default folder: B100)",
    )
    ap.add_argument("--e2e-files", type=int, default=20)
    ap.add_argument("--e2e-rounds", type=int, default=2)
    ap.add_argument("--e2e-model", default="default")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--paired", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.size, args.repeats, args.threads)))
        return 0
    if args.paired:
        print(json.dumps(paired(json.loads(args.paired), args.size, args.repeats, args.threads)))
        return 0

    import torch

    from sisr.hub.names import WEIGHTS

    if args.e2e is not None:
        torch.set_num_threads(args.threads)
        with contextlib.suppress(ImportError):
            import cv2

            cv2.setNumThreads(args.threads)
        folder = Path(args.e2e) if args.e2e else data_dir() / "benchmarks" / "B100"
        report = end_to_end(folder, args.e2e_files, args.e2e_model, args.e2e_rounds)
        report["threads"] = args.threads
        print(json.dumps(report, indent=1))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0

    shipped = sorted({(w.name.rsplit("-x", 1)[0], w.scale) for w in WEIGHTS.values() if w.file})
    specs: list[dict[str, Any]] = []
    for s in args.scales:
        for name, scale in shipped:
            if scale == s and "-x" not in name:
                specs.append({"engine": "sisr", "name": name, "scale": s, "device": "cpu"})
        specs += opencv_specs([s])
    timed = list(specs)
    if torch.cuda.is_available() and not args.no_cuda:
        timed += [{**x, "device": "cuda"} for x in specs if x["engine"] == "sisr"]
    results = []
    for spec in timed:
        r = run_worker(spec, args)
        results.append(r)
        extra = f" variant={spec['variant']}" if "variant" in spec else ""
        msg = r.get("error") or (
            f"{r['out_mpx_per_s']:8.2f} Mpx/s out  peak RSS {r['peak_rss_mib']:5d} MiB"
            + (f"  CUDA {r['peak_cuda_mib']} MiB" if "peak_cuda_mib" in r else "")
        )
        print(f"{label(spec):22s} {spec['device']:5s}{extra:18s} {msg}", file=sys.stderr)
    psnr = {} if args.no_psnr else set5_psnr(specs, args.threads)
    for r in results:
        r["set5_psnr_y"] = psnr.get(label(r))
    # Side by side, timed interleaved in one process per scale (fair under load).
    rows = []
    for s in args.scales:
        group = [x for x in specs if x["scale"] == s]
        ours = [x for x in group if x["engine"] == "sisr"]
        if not ours or len(group) < 2:
            continue
        speeds = run_paired(group, args)
        base = speeds[label(ours[0])]
        for x in group:
            if x["engine"] != "opencv":
                continue
            peer = speeds[label(x)]
            row = {
                "scale": s,
                "sisr": label(ours[0]),
                "peer": label(x),
                "sisr_mpx_per_s": base["out_mpx_per_s"],
                "peer_mpx_per_s": peer["out_mpx_per_s"],
                "speed_ratio_best": round(base["out_mpx_per_s"] / peer["out_mpx_per_s"], 2),
                "speed_ratio_median": round(
                    base["out_mpx_per_s_median"] / peer["out_mpx_per_s_median"], 2
                ),
                "sisr_set5_psnr_y": psnr.get(label(ours[0])),
                "peer_set5_psnr_y": psnr.get(label(x)),
            }
            rows.append(row)
            print(
                f"x{s}: {row['sisr']} {row['sisr_mpx_per_s']:.2f} Mpx/s vs {row['peer']} "
                f"{row['peer_mpx_per_s']:.2f} Mpx/s -> {row['speed_ratio_best']:.2f}x "
                f"(median {row['speed_ratio_median']:.2f}x); Set5 Y-PSNR "
                f"{row['sisr_set5_psnr_y']} vs {row['peer_set5_psnr_y']} dB",
                file=sys.stderr,
            )
    variants: dict[str, Any] = {}
    if args.variants:
        # Execution settings of sisr's x2 model, timed interleaved against the defaults.
        group = [
            {"engine": "sisr", "name": "default", "scale": 2, "device": "cpu", "variant": v}
            for v in ("auto", *VARIANTS)
        ]
        variants = run_paired(group, args)
        base = variants[label(group[0])]["out_mpx_per_s"]
        for spec in group:
            v = variants[label(spec)]
            v["vs_default"] = round(v["out_mpx_per_s"] / base, 2)
            print(
                f"variant {spec['variant']:11s} {v['out_mpx_per_s']:7.2f} Mpx/s "
                f"({v['vs_default']:.2f}x the default)",
                file=sys.stderr,
            )
    report = {
        "threads": args.threads,
        "variants_x2": variants,
        "torch": torch.__version__,
        "results": results,
        "comparison": rows,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
