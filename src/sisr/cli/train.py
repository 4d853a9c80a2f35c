"""``sisr train RECIPE.yaml --out RUN_DIR [--set key.path=value ...] [--resume] [--init-from CKPT]
[--vgg-weights PATH] [--max-time SECONDS] [--budget SECONDS]``.

Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m sisr train ...``
(each rank trains on its own shard; rank 0 logs, validates and saves).
With ``--resume`` the recipe may be omitted: the run folder's ``recipe.yaml`` is used.
A recipe with a ``gan`` section trains a GAN (:mod:`sisr.train.gan`); ``--init-from`` then
names the pixel-loss generator to start from. Files a loss needs (the VGG weights of a
perceptual loss) are checked before any data is read, so a missing one fails at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sisr.errors import ConfigError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "train",
        help="train a network from a YAML recipe",
        description=(
            "Train a super-resolution network from a YAML recipe (see recipes/). "
            "Run under torchrun for data-parallel training."
        ),
    )
    p.add_argument("recipe", nargs="?", type=Path, help="recipe YAML (optional with --resume)")
    p.add_argument(
        "--out", required=True, type=Path, help="run folder (checkpoints, logs, weights)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a recipe value (YAML-parsed), e.g. --set optim.lr=2e-4; repeatable",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="CKPT",
        help="warm start: copy every tensor with the same name and shape from a checkpoint "
        "(.pt) or weights file (.safetensors)",
    )
    p.add_argument(
        "--vgg-weights",
        type=Path,
        metavar="PATH",
        help="ImageNet VGG16/VGG19 weights (torchvision .pth or .safetensors) for perceptual "
        "losses; default: the file in sisr's cache (downloaded there when missing)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="stop (checkpoint, validate, export) after this much wall time",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="train for this much wall time (the recipe's `budget`): the schedule, warm-up "
        "and EMA of the recipe's nominal `iterations` are laid out over it, so the run ends "
        "annealed at the deadline whatever the machine's speed; a resumed run counts the "
        "time its earlier chunks spent",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sisr.losses import check_loss_requirements
    from sisr.train.config import load_recipe
    from sisr.train.run import train

    recipe_path: Path | None = args.recipe
    if recipe_path is None:
        if not args.resume:
            raise ConfigError("a recipe is required (or --resume with a run folder)")
        recipe_path = args.out / "recipe.yaml"
    overrides = list(args.overrides)
    if args.budget is not None:
        overrides.append(f"budget={args.budget!r}")
    recipe = load_recipe(recipe_path, overrides)
    if args.max_time is not None and args.max_time <= 0:
        raise ConfigError(f"--max-time must be > 0, got {args.max_time}")
    # before any data, cache or run-folder work: a missing VGG file costs no training time
    check_loss_requirements([t.as_spec() for t in recipe.loss], vgg_weights=args.vgg_weights)
    train(
        recipe,
        args.out,
        resume=args.resume,
        init_from=args.init_from,
        max_seconds=args.max_time,
        vgg_weights=args.vgg_weights,
    )
    return 0
