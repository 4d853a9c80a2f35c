"""``sisr eval``: score models on benchmarks with the paper protocol, print a paper-style table.

Example: ``sisr eval --model bicubic --data Set5 Set14 B100 --scale 2 3 4 --json out.json``
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sisr.evaluate.runner import EvalPair, EvalResult, ModelLike

DEFAULT_BICUBIC_SCALES: tuple[int, ...] = (2, 3, 4)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="PSNR/SSIM of models on benchmark sets (paper protocol)",
        description=(
            "Evaluate super-resolution models as papers do: HR cropped to a multiple of "
            "the scale, LR made with MATLAB's bicubic, output quantised to 8 bits, PSNR "
            "and SSIM on the BT.601 Y channel with a border of `scale` pixels removed. "
            "Data sets are names (Set5, Set14, B100, Urban100, Manga109, DIV2K-valid: "
            "$SISR_DATA/benchmarks/<name>, else downloaded on first use) or folders."
        ),
    )
    p.add_argument(
        "--model",
        "-m",
        nargs="+",
        required=True,
        metavar="NAME_OR_WEIGHTS",
        help="'bicubic' (MATLAB baseline), a named weights entry, a .safetensors file or a "
        "foreign checkpoint (.pth / .pt: its architecture is detected)",
    )
    p.add_argument(
        "--data", "-d", nargs="+", required=True, metavar="NAME_OR_DIR", help="benchmark sets"
    )
    p.add_argument(
        "--scale",
        "-s",
        nargs="+",
        type=int,
        metavar="S",
        help="scales (default: each model's own scale; 2 3 4 for bicubic)",
    )
    p.add_argument(
        "--lr",
        metavar="DIR",
        default=None,
        help=(
            "score on these LR images (your own pairs: matched to the --data HR folder by "
            "name, as data.pairs in training) instead of MATLAB-bicubic downscales"
        ),
    )
    p.add_argument("--json", metavar="FILE", help="write all results (with per-image scores)")
    p.add_argument("--csv", metavar="FILE", help="write one summary row per model/set/scale")
    p.add_argument(
        "--save-images",
        metavar="DIR",
        help=(
            "save SR outputs as DIR/<model>/<set>/x<scale>/<image>.png; <model> is the file "
            "stem, with parent folders where stems clash (runs/a/model.safetensors -> a_model)"
        ),
    )
    from sisr.cli.convert import add_hint_flags

    add_hint_flags(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument(
        "--batch-size", type=int, default=None, help="same-size images per forward pass (1)"
    )
    p.add_argument("--limit", type=int, default=None, help="first N images of each set only")
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="allow downloading a benchmark archive that has no pinned SHA-256",
    )
    p.add_argument("--no-ssim", action="store_true", help="PSNR only (SSIM is the slow part)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _device(name: str) -> str:
    from sisr.infer.precision import resolve_device

    return str(resolve_device(name))


def _check_writable(flag: str, path: str | None, folder: bool = False) -> None:
    """Fail before a long evaluation, not after it, when an output file cannot be created."""
    from sisr.errors import ConfigError

    if path is None:
        return
    parent = Path(path).absolute() if folder else Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot create a file there ({parent} is not writable)")


def _safe_label(label: str, parents: int = 0) -> str:
    """A model label usable as one folder name: a file's stem, after ``parents`` of its
    folders (``runs/a/model.safetensors``, 1 -> ``a_model``)."""
    path = Path(label)
    if path.suffix == ".safetensors" or len(path.parts) > 1:
        parts = [p for p in path.parent.parts if p not in ("/", ".", "..")]
        label = "_".join([*parts[max(0, len(parts) - parents) :][:parents], path.stem])
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_.") or "model"


def image_folders(labels: list[str]) -> list[str]:
    """One distinct folder name per model for ``--save-images``: the file stem, with as
    many parent folders as it takes to tell clashing stems apart (every
    ``runs/*/model.safetensors`` would otherwise overwrite the last), then a number."""
    names = [_safe_label(label) for label in labels]
    depth = 0
    while len(set(names)) < len(names) and depth < 8:
        depth += 1
        clashing = {n for n in names if names.count(n) > 1}
        names = [
            _safe_label(label, depth) if name in clashing else name
            for label, name in zip(labels, names, strict=True)
        ]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _load_models(
    names: list[str],
    device: str,
    scales: list[int] | None = None,
    hints: dict[str, Any] | None = None,
) -> list[tuple[str, Any]]:
    """Each model, loaded; a foreign file asked for several scales is one network per scale
    (SRCNN / VDSR / FSRCNN files do not store their scale: it comes from --scale). ``hints``
    (``padding``, ``color_space``) go to the foreign files."""
    from sisr.evaluate.runner import bicubic_scale

    hints = hints or {}
    models: list[tuple[str, Any]] = []
    for name in names:
        if bicubic_scale(name) is not False:
            models.append((name, name))
            continue
        from sisr.hub import load_model
        from sisr.hub.weights import is_sisr_weights

        foreign = Path(name).is_file() and not is_sisr_weights(name)
        kw: dict[str, Any] = hints if foreign else {}  # the flags are for foreign files
        if foreign and scales:
            per_scale = {s: load_model(name, device=device, scale=s, **kw) for s in scales}
            models.append((name, per_scale if len(scales) > 1 else per_scale[scales[0]]))
            continue
        models.append((name, load_model(name, device=device, **kw)))
    return models


def _scales_for(model: ModelLike | dict[int, ModelLike], requested: list[int] | None) -> list[int]:
    from sisr.evaluate.runner import bicubic_scale

    if requested:
        return requested
    if isinstance(model, dict):
        return sorted(model)
    fixed = bicubic_scale(model)
    if fixed is True:
        return list(DEFAULT_BICUBIC_SCALES)
    if fixed is not False:
        return [int(fixed)]  # type: ignore[arg-type]
    return [int(model.scale)]  # type: ignore[union-attr]


def run(args: argparse.Namespace) -> int:
    from sisr.cli.convert import hint_kwargs
    from sisr.errors import ConfigError
    from sisr.evaluate.report import format_cell, format_table, write_csv, write_json
    from sisr.evaluate.runner import (
        dataset_label,
        evaluate,
        load_given_pairs,
        make_pairs,
        read_images,
    )

    for flag, value in (("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.scale and any(s < 1 for s in args.scale):
        raise ConfigError(f"--scale must be positive integers, got {args.scale}")
    if args.lr is not None and (len(args.data) != 1 or not args.scale or len(args.scale) != 1):
        raise ConfigError("--lr needs one --data folder of HR images and one --scale")
    _check_writable("--json", args.json)
    _check_writable("--csv", args.csv)
    if args.save_images is not None:
        _check_writable("--save-images", args.save_images, folder=True)
    device = _device(args.device)
    models = _load_models(args.model, device, args.scale, hint_kwargs(args))
    plan = [(label, m, _scales_for(m, args.scale)) for label, m in models]
    folders = image_folders([label for label, _, _ in plan])
    results: dict[tuple[int, int, int], EvalResult] = {}
    total = sum(len(scales) for _, _, scales in plan) * len(args.data)
    done = 0
    failed: list[str] = []
    for di, data in enumerate(args.data):
        # Decoded once per set, pairs once per scale, both shared by all models.
        n_failed = len(failed)
        images = read_images(
            data, limit=args.limit, allow_unverified=args.allow_unverified, failed=failed
        )
        for msg in failed[n_failed:]:  # reported, and the rest of the set is still scored
            print(f"failed: {msg}", file=sys.stderr)
        if not images:
            raise ConfigError(f"{data}: no readable image to evaluate")
        pairs_cache: dict[int, list[EvalPair]] = {}
        set_name = dataset_label(data)
        for mi, (label, model, scales) in enumerate(plan):
            for scale in scales:
                if scale not in pairs_cache:
                    pairs_cache[scale] = (
                        make_pairs(images, scale)
                        if args.lr is None
                        else load_given_pairs(Path(data), Path(args.lr), scale)
                    )
                save = None
                if args.save_images:
                    save = Path(args.save_images) / folders[mi] / set_name / f"x{scale}"
                result = evaluate(
                    model[scale] if isinstance(model, dict) else model,
                    pairs_cache[scale],
                    scale,
                    device=device,
                    save_dir=save,
                    model_name=label,
                    dataset_name=set_name,
                    batch_size=args.batch_size,
                    ssim=not args.no_ssim,
                )
                results[(mi, di, scale)] = result
                done += 1
                if not args.quiet:
                    print(
                        f"[{done}/{total}] {label} {set_name} x{scale}: "
                        f"{format_cell(result)} ({result.seconds:.1f} s)",
                        file=sys.stderr,
                    )
    ordered = [results[k] for k in sorted(results)]
    print(format_table(ordered))
    if args.json:
        write_json(args.json, ordered)
    if args.csv:
        write_csv(args.csv, ordered)
    if failed:
        print(
            f"sisr eval: {len(failed)} image(s) could not be read and were left out",
            file=sys.stderr,
        )
        return 1
    return 0


__all__ = ["register", "run"]
