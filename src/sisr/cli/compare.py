"""``sisr compare``: one PNG comparing bicubic, models and the HR image, with a zoomed crop.

Example: ``sisr compare -i butterfly.png --scale 4 --model edsr-x4 -o fig.png --residual``
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="side-by-side figure: bicubic, model outputs, HR, zoomed crop, PSNR",
        description=(
            "Downscale an HR image with MATLAB's bicubic (or take the given --lr image), "
            "upscale it with bicubic and each model, and draw one PNG: per column the title, PSNR / SSIM on Y, the whole "
            "image with the zoom rectangle, and the zoomed crop; --residual adds a row "
            "with output minus bicubic (128 + gain * difference)."
        ),
    )
    p.add_argument("-i", "--input", required=True, metavar="HR_IMAGE", help="ground-truth image")
    p.add_argument("--scale", "-s", type=int, required=True, help="upscaling factor")
    p.add_argument(
        "--lr",
        metavar="LR_IMAGE",
        help="upscale this image (a degraded photo, a camera's own small shot) instead of "
        "the MATLAB-bicubic downscale of HR_IMAGE; its size must be HR_IMAGE's divided by "
        "the scale",
    )
    p.add_argument(
        "--model",
        "-m",
        action="append",
        required=True,
        metavar="M",
        help="model (named weights, .safetensors or 'bicubic'); repeat for several",
    )
    p.add_argument("-o", "--output", required=True, metavar="FIG.png", help="figure to write")
    p.add_argument("--residual", action="store_true", help="add the high-frequency residual row")
    p.add_argument(
        "--gain", type=float, default=4.0, help="residual gain (default 4), offset is 128"
    )
    p.add_argument("--crop", metavar="x,y,w,h", help="zoom region in HR pixels (default: auto)")
    p.add_argument(
        "--panel-width", type=int, default=384, help="largest width of one panel (default 384)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from sisr.errors import ConfigError
    from sisr.evaluate.compare import auto_crop, compare_panels, compose, parse_crop
    from sisr.evaluate.runner import bicubic_scale
    from sisr.io import read_rgb_uint8, write_uint8

    if args.scale < 1:
        raise ConfigError(f"--scale must be >= 1, got {args.scale}")
    if args.panel_width < 16:
        raise ConfigError(f"--panel-width must be >= 16, got {args.panel_width}")
    from sisr.infer.precision import resolve_device

    device = str(resolve_device(args.device))
    hr = torch.from_numpy(np.array(read_rgb_uint8(args.input))).permute(2, 0, 1)
    models: list[tuple[str, object]] = []
    for name in args.model:
        if bicubic_scale(name) is not False:
            continue  # the bicubic column is always there
        from sisr.hub import load_model

        models.append(
            (
                Path(name).stem if name.endswith(".safetensors") else name,
                load_model(name, device=device, scale=args.scale),
            )
        )
    lr = None
    if args.lr:
        lr = torch.from_numpy(np.array(read_rgb_uint8(args.lr))).permute(2, 0, 1)
    panels = compare_panels(
        hr,
        args.scale,
        models,
        gain=args.gain,
        device=device,
        name=args.input,
        lr=lr,
        lr_name=args.lr or "LR image",
    )
    shape = panels[0].image.shape
    crop = parse_crop(args.crop) if args.crop else auto_crop(panels[-1].image)
    fig, _ = compose(panels, crop, residual=args.residual, panel_width=args.panel_width)
    write_uint8(args.output, np.asarray(fig))
    print(
        f"{args.output}: {len(panels)} panels, {shape[2]}x{shape[1]}, crop {','.join(map(str, crop))}"
    )
    for p in panels:
        print(f"  {p.title}: {p.label}")
    return 0


__all__ = ["register", "run"]
