"""``sisr train RECIPE.yaml --out RUN_DIR [--set key.path=value ...] [--resume] [--init-from CKPT]``.

Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m sisr train ...``
(each rank trains on its own shard; rank 0 logs, validates and saves).
With ``--resume`` the recipe may be omitted: the run folder's ``recipe.yaml`` is used.
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
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="stop (checkpoint, validate, export) after this much wall time",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sisr.train.config import load_recipe
    from sisr.train.loop import train

    recipe_path: Path | None = args.recipe
    if recipe_path is None:
        if not args.resume:
            raise ConfigError("a recipe is required (or --resume with a run folder)")
        recipe_path = args.out / "recipe.yaml"
    recipe = load_recipe(recipe_path, args.overrides)
    if args.max_time is not None and args.max_time <= 0:
        raise ConfigError(f"--max-time must be > 0, got {args.max_time}")
    train(
        recipe,
        args.out,
        resume=args.resume,
        init_from=args.init_from,
        max_seconds=args.max_time,
    )
    return 0
