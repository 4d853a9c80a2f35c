"""``sisr upscale -i INPUT -o OUTPUT [-n MODEL] [-s SCALE] ...``: super-resolve images.

INPUT is a file, a folder (recursive; sub-folders are kept) or a glob; OUTPUT is a file
(single input with an image suffix) or a folder. Flags follow Real-ESRGAN / the ncnn
tools (-i -o -n -s -t). Under ``torchrun --nproc_per_node N -m sisr upscale ...`` the files
are shared out between the processes (each on ``cuda:LOCAL_RANK`` when CUDA is there).
Exit status: 0 when every file was upscaled or skipped, 1 when any failed, 2 on bad
options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from sisr.errors import ConfigError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "upscale",
        help="super-resolve images (file, folder or glob)",
        description=(
            "Upscale images with a super-resolution network. Keeps alpha, 16-bit depth, "
            "gray, ICC profiles and EXIF; large images are processed in tiles."
        ),
    )
    p.add_argument("-i", "--input", required=True, help="image file, folder or glob pattern")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file or folder: an existing folder or a name ending in / is a folder; "
        "with one input file, a name with an image suffix (.png .jpg .webp .tif .bmp) is "
        "the output file; anything else is an error. The output folder is checked for "
        "writing before any image is computed, and is never read as input",
    )
    p.add_argument(
        "-n",
        "--model",
        default="default",
        help="named weights (see `sisr models`), a published name (`sisr models --catalog`, "
        "downloaded on first use) or a weights file: .safetensors, or a .pth/.pt whose "
        "architecture is detected, or a .pt/.pt2 graph from `sisr export` "
        "(default: 'default', the built-in SPAN-t, best on clean images; 'photo' (x2, x4) is "
        "SPAN-t trained for JPEGs and phone pictures (blur, noise, compression); 'fast' is "
        "ESPCN)",
    )
    p.add_argument(
        "-s",
        "--scale",
        type=float,
        default=None,
        help=(
            "output scale: 2, 3, 4 pick those weights; any other factor up to 16 (1.5, 3.2, 8) "
            "runs the smallest trained scale that reaches it (or two passes, x4 then x2 for "
            "x8) and resizes to the exact size"
        ),
    )
    from sisr.cli.convert import add_hint_flags

    add_hint_flags(p)
    p.add_argument(
        "--width", type=int, default=None, metavar="W", help="output width (aspect kept)"
    )
    p.add_argument(
        "--height", type=int, default=None, metavar="H", help="output height (aspect kept)"
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=None,
        metavar="N",
        help="longest output side (aspect kept); with --width/--height the output fits all",
    )
    p.add_argument(
        "-t",
        "--tile",
        default="auto",
        help="tile size in input pixels: auto (fits the device memory), N, or 0 for none",
    )
    p.add_argument(
        "--tile-pad",
        type=int,
        default=None,
        metavar="P",
        help="context around each tile (default: the network's receptive radius: exact)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help=(
            "auto: on CPU, bf16 where the CPU has native bf16 (AMX / AVX512-BF16) and the "
            "weights record that bf16 costs them at most 0.02 dB, else fp32; on CUDA, fp16 "
            "for half-safe networks"
        ),
    )
    p.add_argument("-x", "--tta", action="store_true", help="x8 self-ensemble (8x slower)")
    p.add_argument(
        "-f",
        "--format",
        choices=["png", "jpg", "webp", "tiff"],
        default=None,
        help="output format (default: the input's own; GIF and others become PNG)",
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality (95)")
    p.add_argument("--suffix", default="", help="added to output file names (e.g. _x4)")
    p.add_argument(
        "--skip-existing", action="store_true", help="leave outputs that already exist alone"
    )
    p.add_argument("--batch", type=int, default=1, metavar="N", help="tiles per forward pass")
    p.add_argument(
        "--alpha",
        choices=["bicubic", "model"],
        default="bicubic",
        help="how to upscale an alpha channel (default bicubic)",
    )
    p.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="run the network with PyTorch (default) or onnxruntime (CPU; -n takes an .onnx "
        "file from `sisr export` or any model, exported in memory; needs .[onnx])",
    )
    p.add_argument(
        "--png-level",
        type=int,
        default=None,
        metavar="L",
        help="PNG compression 0-9 (default 1: Sub filter + zlib 1, fast; 6: the former default; 9: smallest files)",
    )
    p.add_argument(
        "--video-codec",
        default="libx264",
        help="encoder for video outputs: libx264 (default), libx265, libvpx-vp9, libsvtav1",
    )
    p.add_argument(
        "--crf",
        type=int,
        default=18,
        help="video quality (constant rate factor, lower is better; default 18)",
    )
    p.add_argument("--preset", default="medium", help="x264/x265 speed preset (medium)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sisr.cli.convert import hint_kwargs
    from sisr.infer import Upscaler, parse_tile
    from sisr.infer.runner import dist_env, plan_jobs, prepare_outputs, shard

    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    if not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {args.quality}")
    if args.png_level is not None and not 0 <= args.png_level <= 9:
        raise ConfigError(f"--png-level must be in 0..9, got {args.png_level}")
    if not 0 <= args.crf <= 63:
        raise ConfigError(f"--crf must be in 0..63, got {args.crf}")
    tile = parse_tile(args.tile)
    from sisr.io import get_max_pixels

    get_max_pixels()  # a bad $SISR_MAX_PIXELS is one error now, not one per file
    rank, world, local_rank, local_world = dist_env()
    device = args.device
    if world > 1:
        if device == "auto" and torch.cuda.is_available():
            device = f"cuda:{local_rank}"
        elif device in ("auto", "cpu") and "OMP_NUM_THREADS" not in os.environ:
            # Processes on one machine share its cores instead of each taking all.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))

    jobs = shard(
        plan_jobs(args.input, args.output, fmt=args.format, suffix=args.suffix), rank, world
    )
    prepare_outputs(jobs)  # unwritable output fails now, not after the first image
    options = dict(
        precision=args.precision,
        tile=tile,
        tile_pad=args.tile_pad,
        tta=args.tta,
        alpha=args.alpha,
        batch=args.batch,
    )
    hints = hint_kwargs(args)
    target = _any_size_target(args)
    if target is not None:
        up = _any_size_upscaler(args, target, device, options)
    elif args.runtime == "onnxruntime":
        if any(v is not None for v in hints.values()):
            raise ConfigError("--padding and --color-space load weights: use --runtime torch")
        up = _onnx_upscaler(args, device, options)
    else:
        from sisr.export.graphs import graph_upscaler  # a .pt / .pt2 from `sisr export`

        up = graph_upscaler(args.model, scale=args.scale, device=device, **options)
        if up is None:
            up = Upscaler.from_name(
                args.model,
                scale=args.scale,
                device=device,
                progress=not args.quiet,
                **hints,
                **options,
            )
        elif any(v is not None for v in hints.values()):
            raise ConfigError(
                f"{args.model}: an exported graph runs as it was exported; --padding and "
                "--color-space are for weights"
            )
    with _sigterm_as_interrupt():
        return _run_jobs(args, up, jobs, rank, world)


def _any_size_target(args: argparse.Namespace) -> Any:
    """The :class:`~sisr.infer.any_size.Target` when the size asked for is not one trained
    scale of the model (a factor like 1.5 or 8, --width / --height / --max-side), else None
    (and ``args.scale`` becomes that integer scale)."""
    from sisr.infer.any_size import Target

    sides = (args.width, args.height, args.max_side)
    if any(v is not None for v in sides):
        return Target(args.scale, *sides).check()
    if args.scale is None:
        return None
    target = Target(args.scale).check()
    if float(args.scale).is_integer() and int(args.scale) in _scales_of(
        args.model, int(args.scale)
    ):
        args.scale = int(args.scale)
        return None
    return target


def _scales_of(model: str, wanted: int | None = None) -> list[int]:
    """The trained scales of a model family (``default`` -> 2, 3, 4); bicubic has all; a
    file or an unknown name: ``wanted`` (its loader checks it)."""
    import re
    from pathlib import Path

    from sisr.hub import names

    if Path(model).is_file():
        return [wanted] if wanted is not None else []
    if names.BICUBIC_NAME.match(f"{model}-x2"):
        return [2, 3, 4, 8]
    m = re.fullmatch(r"(.+)-x(\d+)", model)
    if m is not None:
        return [int(m.group(2))]
    found = [
        int(v.group(1))
        for v in (re.fullmatch(rf"{re.escape(model)}-x(\d+)", k) for k in names.WEIGHTS)
        if v is not None
    ]
    return sorted(found) or ([wanted] if wanted is not None else [])


def _any_size_upscaler(
    args: argparse.Namespace, target: Any, device: str, options: dict[str, Any]
) -> Any:
    from pathlib import Path

    from sisr.cli.convert import hint_kwargs
    from sisr.infer import Upscaler
    from sisr.infer.any_size import AnySize

    if args.runtime == "onnxruntime":
        raise ConfigError("--runtime onnxruntime runs the graph's own scale; -s 1.5, --width ...")
    hints = hint_kwargs(args)
    if Path(args.model).is_file():
        one = Upscaler.from_name(
            args.model, device=device, progress=not args.quiet, **hints, **options
        )
        return AnySize(lambda s: one, [one.scale], target)
    scales = _scales_of(args.model)
    if not scales:
        raise ConfigError(f"model {args.model!r}: no trained scales found for {target.describe()}")

    def get(scale: int) -> Any:
        return Upscaler.from_name(
            args.model, scale=scale, device=device, progress=not args.quiet, **hints, **options
        )

    return AnySize(get, scales, target)


def _onnx_upscaler(args: argparse.Namespace, device: str, options: dict[str, Any]) -> Any:
    """An Upscaler whose network is an onnxruntime session (CPU, fp32): same tiling, alpha,
    16-bit and batch path as PyTorch."""
    from pathlib import Path

    from sisr.export.ort import load_onnx
    from sisr.infer import Upscaler

    if device not in ("auto", "cpu"):
        raise ConfigError(f"--runtime onnxruntime runs on the CPU; got --device {device}")
    if options["precision"] not in ("auto", "fp32"):
        raise ConfigError("--runtime onnxruntime runs fp32 (export with --fp16 for fp16 weights)")
    net = load_onnx(args.model, scale=args.scale)
    label = Path(args.model).stem if Path(args.model).suffix else args.model
    # NCHW: onnxruntime takes contiguous arrays, a channels-last tensor would be copied.
    return Upscaler(
        net,
        device="cpu",
        channels_last=False,
        name=f"{label} (onnxruntime)",
        **{**options, "precision": "fp32"},
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, ``kill``, torchrun stopping workers) unwinds like Ctrl-C, so
    the output being written is finished or its temporary file removed, never left."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_jobs(args: argparse.Namespace, up: Any, jobs: list[Any], rank: int, world: int) -> int:
    from sisr.infer.runner import run_jobs

    show = not args.quiet and rank == 0
    who = f"rank {rank}/{world}: " if world > 1 else ""
    if not args.quiet:
        print(f"sisr upscale: {who}{len(jobs)} file(s) with {up}", file=sys.stderr)
    summary = run_jobs(
        up,
        jobs,
        skip_existing=args.skip_existing,
        fmt=args.format,
        quality=args.quality,
        progress=show,
        png_level=args.png_level,
        video={"codec": args.video_codec, "crf": args.crf, "preset": args.preset},
    )
    print(f"sisr upscale: {who}{summary.line()}", file=sys.stderr)
    return 0 if summary.ok else 1
