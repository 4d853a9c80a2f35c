"""CPU runtimes side by side: PyTorch fp32 and bf16, onnxruntime fp32 and int8 (static
quantisation calibrated on training images), OpenCV dnn (our ONNX file) and OpenCV
dnn_superres (its own ESPCN), for the fast and the default models.

int8: the convolutions that quantising costs too much for stay float32; which ones is
chosen on BSD200 training patches (:mod:`sisr.export.quantize`), Set5 only measures it.

For each engine: output megapixels per second on one photo-like LR image (``--size``,
interleaved runs, best of ``--repeats``) and Set5 Y-PSNR (paper protocol, border = scale).
Every sisr engine runs through :class:`sisr.infer.Upscaler` (same tiling), uint8 in and
out. The int8 model is kept only if its Set5 PSNR is within 0.05 dB of fp32.

On a CPU without AMX / AVX512-BF16, oneDNN emulates bf16 and it is slow: measured anyway.

    pip install -e '.[onnx,bench]'
    python benchmarks/runtime_speed.py --json runtimes.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
INT8_MAX_LOSS_DB = 0.05
Engine = Callable[[np.ndarray], np.ndarray]


def data_dir() -> Path:
    return Path(os.environ.get("SISR_DATA", REPO.parent / "shared" / "data"))


def int8_engine(fp32: Path, out: Path, scale: int, n_calib: int, threads: int) -> dict:
    """Quantise with :func:`sisr.export.quantize.quantize_int8`: calibrated on T91 patches,
    layers chosen on BSD200 patches (both training sets, never Set5)."""
    from sisr.export.quantize import quantize_int8, training_patches

    train = data_dir() / "train"
    t91, bsd = sorted((train / "T91").glob("*.png")), sorted((train / "BSD200").glob("*.png"))
    if not t91 or not bsd:
        raise SystemExit(f"no T91/BSD200 training images under {train} (set SISR_DATA)")
    calib = training_patches(t91, scale, n_calib, seed=0)
    val = training_patches(bsd, scale, max(8, n_calib // 2), seed=1)
    report = quantize_int8(fp32, out, calib=calib, val=val, scale=scale, threads=threads)
    return report.to_dict()


def build_engines(
    name: str, workdir: Path, n_calib: int, threads: int
) -> tuple[dict[str, Engine], int, dict]:
    """Engines for one named model (label -> uint8 HxWx3 -> uint8), its scale and the int8
    quantisation report."""
    import sisr
    from sisr.export import export_onnx, load_for_export
    from sisr.export.ort import OnnxNet, load_onnx
    from sisr.infer import Upscaler

    model, meta = load_for_export(name)
    scale = int(meta["scale"])
    engines: dict[str, Engine] = {}
    engines["pytorch fp32"] = sisr.load(name, device="cpu", progress=False).upscale
    engines["pytorch bf16"] = sisr.load(
        name, device="cpu", precision="bf16", progress=False
    ).upscale
    fp32 = workdir / f"{name}.onnx"
    export_onnx(model, fp32, meta=meta)
    ort_net = load_onnx(fp32)
    engines["onnxruntime fp32"] = Upscaler(ort_net, channels_last=False).upscale
    int8_report: dict = {}
    try:
        int8 = workdir / f"{name}.int8.onnx"
        int8_report = int8_engine(fp32, int8, scale, n_calib, threads)
        if not int8_report["quantized"]:
            raise RuntimeError("no layer can be quantised within the budget")
        net8 = OnnxNet(
            int8.read_bytes(),
            info=ort_net.info(),
            scale=scale,
            arch_id=ort_net.arch_id,
            activation_bytes_per_pixel=ort_net.activation_bytes_per_pixel,
        )
        engines["onnxruntime int8"] = Upscaler(net8, channels_last=False).upscale
    except Exception as exc:  # quantisation support varies by operator set
        print(f"{name}: int8 quantisation failed: {exc}", file=sys.stderr)
        int8_report["error"] = str(exc)
    engines.update(opencv_engines(fp32, scale))
    return engines, scale, int8_report


def opencv_engines(onnx_file: Path, scale: int) -> dict[str, Engine]:
    """OpenCV dnn on our ONNX file and dnn_superres's own ESPCN, each where this OpenCV
    can run it; one line for each that it cannot (the benchmark goes on without it)."""
    from upscale_speed import dnn_superres, unavailable

    engines: dict[str, Engine] = {}
    try:
        import cv2
    except ImportError:
        print(
            "opencv dnn: unavailable (OpenCV not installed: pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return engines
    try:
        net = cv2.dnn.readNetFromONNX(str(onnx_file))
    except cv2.error as exc:
        why = " ".join(str(exc).split())[:300]
        print(f"opencv dnn (our onnx): unavailable ({why})", file=sys.stderr)
    else:

        def cv_ours(rgb: np.ndarray) -> np.ndarray:
            blob = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255
            net.setInput(blob)
            y = net.forward()[0].transpose(1, 2, 0)
            return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)

        engines["opencv dnn (our onnx)"] = cv_ours
    sr, why = dnn_superres("espcn", scale)
    if sr is None:
        unavailable(why)
    else:
        engines["opencv dnn_superres ESPCN"] = lambda rgb: sr.upsample(
            np.ascontiguousarray(rgb[..., ::-1])
        )[..., ::-1]
    return engines


def set5_psnr(fn: Engine, scale: int) -> float:
    import torch

    from sisr.evaluate.runner import make_pairs, read_images
    from sisr.metrics import psnr_y

    pairs = make_pairs(read_images(data_dir() / "benchmarks" / "Set5"), scale)
    scores = []
    for p in pairs:
        sr = np.ascontiguousarray(fn(np.ascontiguousarray(p.lr.permute(1, 2, 0).numpy())))
        scores.append(float(psnr_y(torch.from_numpy(sr).permute(2, 0, 1), p.hr, border=scale)))
    return sum(scores) / len(scores)


def time_engines(engines: dict[str, Engine], image: np.ndarray, scale: int, repeats: int) -> dict:
    for fn in engines.values():
        fn(image)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(repeats):  # interleaved: background load hits every engine alike
        for k, fn in engines.items():
            t0 = time.perf_counter()
            fn(image)
            times[k].append(time.perf_counter() - t0)
    mpx = image.shape[0] * image.shape[1] * scale * scale / 1e6
    return {k: mpx / min(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fast-x2", "default-x2"])
    ap.add_argument("--size", type=int, default=384, help="LR side of the timed image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calib", type=int, default=64, help="T91 patches for int8 calibration")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch
    from upscale_memory import synthetic_image

    from sisr.hub.names import known_names
    from sisr.infer.precision import cpu_bf16_support

    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    names = [m for m in args.models if m in known_names() or Path(m).is_file()]
    for m in sorted(set(args.models) - set(names)):
        print(f"skipping {m!r}: no such model here", file=sys.stderr)
    image = synthetic_image(args.size, args.size, seed=1)
    print(
        f"threads {args.threads}, LR {args.size}x{args.size}, CPU bf16: "
        f"{cpu_bf16_support() or 'emulated (no AMX/AVX512-BF16)'}",
        file=sys.stderr,
    )
    rows = []
    int8s: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            engines, scale, int8 = build_engines(name, Path(tmp), args.calib, args.threads)
            int8s[name] = int8
            speed = time_engines(engines, image, scale, args.repeats)
            psnr = {k: set5_psnr(fn, scale) for k, fn in engines.items()}
            for k in engines:
                note = ""
                if k == "onnxruntime int8":
                    loss = psnr["onnxruntime fp32"] - psnr[k]
                    kept = loss <= INT8_MAX_LOSS_DB
                    n_q, n_all = len(int8["quantized"]), len(int8["quantized"] + int8["excluded"])
                    note = (
                        f"{'kept' if kept else 'rejected'}: {-loss:+.3f} dB vs fp32, "
                        f"{n_q}/{n_all} convs int8"
                    )
                rows.append(
                    {
                        "model": name,
                        "engine": k,
                        "out_mpx_per_s": round(speed[k], 3),
                        "set5_psnr_y": round(psnr[k], 3),
                        "note": note,
                    }
                )
    print(f"{'model':12s} {'engine':28s} {'MP/s out':>9s} {'Set5 Y-PSNR':>12s}", file=sys.stderr)
    for r in rows:
        print(
            f"{r['model']:12s} {r['engine']:28s} {r['out_mpx_per_s']:9.2f} "
            f"{r['set5_psnr_y']:12.3f}  {r['note']}",
            file=sys.stderr,
        )
    report = {"threads": args.threads, "lr_size": args.size, "rows": rows, "int8": int8s}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
