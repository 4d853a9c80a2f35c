"""``sisr convert IN OUT [--arch NAME]``: foreign checkpoint -> self-describing sisr weights.

Without ``--arch`` the architecture, hyper-parameters and scale are detected from the
tensors (:mod:`sisr.hub.detect`); what they cannot tell comes from ``--scale``,
``--padding`` and ``--color-space`` (:func:`add_hint_flags`, shared with ``sisr upscale`` and
``sisr eval``).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_hint_flags(p: argparse.ArgumentParser) -> None:
    """``--padding`` and ``--color-space``: facts a foreign checkpoint does not record."""
    p.add_argument(
        "--padding",
        choices=["same", "valid"],
        default=None,
        help="for a foreign SRCNN / FSRCNN / ESPCN / VDSR file: its convolutions were "
        "zero-padded (same) or unpadded (valid: the input is then extended at its edges, so "
        "the output keeps its size); a file does not record it (default: what detection "
        "assumes from the file's layout, else same)",
    )
    p.add_argument(
        "--color-space",
        choices=["rgb", "y", "ycbcr"],
        default=None,
        help="for a foreign classic network: what it was fed: rgb, ycbcr (a 3-channel "
        "network on full-range YCbCr) or y (a 1-channel luma network) (default: from the "
        "channels and the file's layout)",
    )


def hint_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``padding`` / ``color_space`` keyword arguments from the flags of :func:`add_hint_flags`."""
    return {"padding": args.padding, "color_space": args.color_space}


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
    add_hint_flags(p)
    p.add_argument("--fp16", action="store_true", help="store tensors as float16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sisr.archs._detect import Hints
    from sisr.archs.complexity import count_params
    from sisr.errors import ConfigError
    from sisr.hub.convert import convert_checkpoint, convert_detected, parse_overrides

    dtype = torch.float16 if args.fp16 else None
    hints = Hints(**hint_kwargs(args))
    if args.arch is None:
        if args.overrides or args.layout:
            raise ConfigError("--set and --layout need --arch (detection reads them from the file)")
        result = convert_detected(
            args.input, args.output, scale=args.scale, dtype=dtype, hints=hints
        )
    else:
        overrides = parse_overrides(args.overrides)
        if hints.padding is not None:  # with --arch the hints are plain hparams
            overrides.setdefault("padding", hints.padding)
        if hints.color_space == "y":
            overrides.setdefault("y_channel", True)
        elif hints.color_space is not None:
            overrides.setdefault("color_space", hints.color_space)
        result = convert_checkpoint(
            args.input,
            args.output,
            args.arch,
            scale=args.scale,
            overrides=overrides,
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
