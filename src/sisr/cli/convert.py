"""``sisr convert IN OUT [--arch NAME]``: foreign checkpoint -> self-describing sisr weights.

Without ``--arch`` the architecture, hyper-parameters and scale are detected from the
tensors (:mod:`sisr.hub.detect`).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a foreign checkpoint (.pt/.pth/.safetensors) to sisr weights",
        description=(
            "Read a PyTorch checkpoint (tensors only: no code from the file ever runs; whole-model "
            "pickles are read as inert records) or a safetensors file; unwrap BasicSR params_ema/params, "
            "state_dict/model wrappers and module. prefixes; rename known foreign key layouts; "
            "detect the architecture (or build --arch), load strictly and save a sisr "
            ".safetensors weights file."
        ),
    )
    p.add_argument("input", help="foreign checkpoint file")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument(
        "--arch",
        default=None,
        help="preset (edsr-baseline) or architecture id (default: detected from the tensors)",
    )
    p.add_argument(
        "--scale", type=int, default=None, help="upscaling factor (default: inferred from shapes)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyper-parameter of the preset (JSON value), repeatable",
    )
    p.add_argument(
        "--layout", default=None, help="foreign key layout (default: detected from the keys)"
    )
    p.add_argument("--fp16", action="store_true", help="store tensors as float16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sisr.archs.complexity import count_params
    from sisr.errors import ConfigError
    from sisr.hub.convert import convert_checkpoint, convert_detected, parse_overrides

    dtype = torch.float16 if args.fp16 else None
    if args.arch is None:
        if args.overrides or args.layout:
            raise ConfigError("--set and --layout need --arch (detection reads them from the file)")
        result = convert_detected(args.input, args.output, scale=args.scale, dtype=dtype)
    else:
        result = convert_checkpoint(
            args.input,
            args.output,
            args.arch,
            scale=args.scale,
            overrides=parse_overrides(args.overrides),
            layout=args.layout,
            dtype=dtype,
        )
    model = result.model
    print(
        f"{args.input} -> {args.output}: {model.arch_id} x{model.scale}, "
        f"{count_params(model) / 1e6:.3f}M params, {result.num_tensors} tensors, "
        f"key layout {result.layout}"
    )
    return 0
