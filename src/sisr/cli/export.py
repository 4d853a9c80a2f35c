"""``sisr export -n MODEL -o FILE [--format onnx|torchscript|exported] [--opset N] [--fp16]
[--static H W] [--int8 DIR]``: write a network as a graph file for other runtimes.

The ONNX file takes ``input`` (N, 3, H, W) float32 RGB in [0, 1] and gives ``output``
(N, 3, sH, sW) in the same layout (unclamped); height and width are dynamic unless
``--static``. The weights' metadata is stored as ``sisr.*`` model properties. Every file
is checked against PyTorch before it is written; ``-o`` is checked before any of that (its
folder must exist and take files, it must not be a folder), and the file appears whole or
not at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="export a network to ONNX, TorchScript or torch.export (.pt2)",
        description=(
            "Export named weights or a .safetensors file as a graph file. ONNX: input "
            "'input' and output 'output', float32 NCHW RGB in [0, 1], dynamic batch, height "
            "and width by default; metadata (architecture, scale, recipe, measured PSNR) as "
            "model properties. The export is run and compared with PyTorch before writing."
        ),
    )
    p.add_argument("-n", "--model", default="default", help="named weights or a .safetensors file")
    p.add_argument("-s", "--scale", type=int, default=None, help="pick the weights of this scale")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx, .pt, .pt2)")
    p.add_argument(
        "--format",
        choices=["onnx", "torchscript", "exported"],
        default=None,
        help="graph format (default: from the output suffix, else onnx)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument(
        "--fp16", action="store_true", help="ONNX: fp16 weights and compute, fp32 in/out"
    )
    p.add_argument(
        "--static",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="fix the input size (needed by networks with a bicubic pre-upsampling)",
    )
    p.add_argument(
        "--int8",
        metavar="DIR",
        type=Path,
        default=None,
        help="ONNX: int8 static quantisation calibrated on the training images in DIR "
        "(half calibrate, the other half choose which convolutions stay float32 so that "
        "the loss there is at most 0.03 dB)",
    )
    p.add_argument(
        "--int8-patches", type=int, default=64, help="calibration patches for --int8 (64)"
    )
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=run)


_BY_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "exported"}


def run(args: argparse.Namespace) -> int:
    from sisr.errors import ConfigError
    from sisr.export import export_onnx, export_program, export_torchscript, load_for_export
    from sisr.export.destination import check_destination

    out = Path(args.output)
    fmt = args.format or _BY_SUFFIX.get(out.suffix.lower(), "onnx")
    if fmt != "onnx" and (args.fp16 or args.opset is not None or args.int8 is not None):
        raise ConfigError("--fp16, --opset and --int8 apply to --format onnx only")
    if args.int8 is not None and args.fp16:
        raise ConfigError("--int8 and --fp16 exclude each other")
    if args.int8 is not None and not 1 <= args.int8_patches <= 10_000:
        raise ConfigError(f"--int8-patches must be in 1..10000, got {args.int8_patches}")
    static = tuple(args.static) if args.static else None
    check_destination(out)  # a bad -o fails now, not after the export
    images = _int8_images(args.int8) if args.int8 is not None else []
    model, meta = load_for_export(args.model, args.scale)
    if fmt == "onnx":
        from sisr.export.onnx_export import DEFAULT_OPSET

        opset = DEFAULT_OPSET if args.opset is None else args.opset
        if args.int8 is not None:
            report = _export_int8(model, meta, out, images, args.int8_patches, opset, static)
        else:
            report = export_onnx(model, out, meta=meta, opset=opset, fp16=args.fp16, static=static)
    elif fmt == "torchscript":
        report = export_torchscript(model, out, meta=meta, static=static)
    else:
        report = export_program(model, out, meta=meta, static=static)
    report.update(output=str(out), model=meta.get("source"), scale=meta["scale"])
    if args.json:
        print(json.dumps(report, indent=1))
    if "int8" in report:
        q = report["int8"]
        n_q, n_all = len(q["quantized"]), len(q["quantized"]) + len(q["excluded"])
        print(
            f"sisr export: int8 on {n_q}/{n_all} convolutions, validation PSNR "
            f"{q['val_psnr_fp32']:.3f} -> {q['val_psnr_int8']:.3f} dB",
            file=sys.stderr,
        )
    diff = report.get("max_abs_diff")
    check = f"max |diff| vs PyTorch {diff:.2g}" if diff is not None else report.get("verified")
    print(
        f"sisr export: wrote {out} ({fmt}, x{meta['scale']}, {report['bytes'] / 1e6:.2f} MB; "
        f"{check})",
        file=sys.stderr,
    )
    return 0


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _int8_images(folder: Path) -> list[Path]:
    """The training images of ``--int8 DIR`` (checked before the model is loaded)."""
    from sisr.errors import ConfigError

    if not folder.is_dir():
        raise ConfigError(f"--int8 {folder}: not a folder of training images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ConfigError(f"--int8 {folder}: needs at least two images, found {len(files)}")
    return files


def _export_int8(
    model: Any,
    meta: dict,
    out: Path,
    files: list[Path],
    n_patches: int,
    opset: int,
    static: tuple[int, ...] | None,
) -> dict:
    """Export fp32 to a temporary file, then quantise it into ``out`` (see
    :mod:`sisr.export.quantize`); the report of both, with the int8 choice under "int8"."""
    import tempfile

    from sisr.errors import ConfigError
    from sisr.export import export_onnx
    from sisr.export.quantize import quantize_int8, training_patches

    scale = int(meta["scale"])
    # disjoint halves: the layer choice is judged on images the calibration did not see
    calib = training_patches(files[0::2], scale, n_patches, seed=0)
    val = training_patches(files[1::2], scale, max(8, n_patches // 2), seed=1)
    with tempfile.TemporaryDirectory(prefix="sisr-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        report = export_onnx(model, fp32, meta=meta, opset=opset, static=static)
        q = quantize_int8(fp32, out, calib=calib, val=val, scale=scale)
    if not q.quantized:
        raise ConfigError(
            f"--int8: no convolution can be quantised within {q.budget_db} dB on "
            f"{files[0].parent}; nothing written"
        )
    report["int8"] = q.to_dict()
    report["bytes"] = out.stat().st_size
    report.pop("max_abs_diff", None)  # that was the float32 graph
    report["verified"] = "float32 graph vs PyTorch; int8 by validation PSNR"
    return report
