"""``sisr export -n MODEL -o FILE [--format onnx|torchscript|exported] [--opset N] [--fp16]
[--static H W]``: write a network as a graph file for other runtimes.

The ONNX file takes ``input`` (N, 3, H, W) float32 RGB in [0, 1] and gives ``output``
(N, 3, sH, sW) in the same layout (unclamped); height and width are dynamic unless
``--static``. The weights' metadata is stored as ``sisr.*`` model properties. Every file
is checked against PyTorch before it is written.
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
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=run)


_BY_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "exported"}


def run(args: argparse.Namespace) -> int:
    from sisr.errors import ConfigError
    from sisr.export import export_onnx, export_program, export_torchscript, load_for_export

    out = Path(args.output)
    fmt = args.format or _BY_SUFFIX.get(out.suffix.lower(), "onnx")
    if fmt != "onnx" and (args.fp16 or args.opset is not None):
        raise ConfigError("--fp16 and --opset apply to --format onnx only")
    static = tuple(args.static) if args.static else None
    model, meta = load_for_export(args.model, args.scale)
    if fmt == "onnx":
        from sisr.export.onnx_export import DEFAULT_OPSET

        opset = DEFAULT_OPSET if args.opset is None else args.opset
        report = export_onnx(model, out, meta=meta, opset=opset, fp16=args.fp16, static=static)
    elif fmt == "torchscript":
        report = export_torchscript(model, out, meta=meta, static=static)
    else:
        report = export_program(model, out, meta=meta, static=static)
    report.update(output=str(out), model=meta.get("source"), scale=meta["scale"])
    if args.json:
        print(json.dumps(report, indent=1))
    diff = report.get("max_abs_diff")
    check = f"max |diff| vs PyTorch {diff:.2g}" if diff is not None else report.get("verified")
    print(
        f"sisr export: wrote {out} ({fmt}, x{meta['scale']}, {report['bytes'] / 1e6:.2f} MB; "
        f"{check})",
        file=sys.stderr,
    )
    return 0
