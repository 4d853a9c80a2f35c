"""Training engine: typed recipes, the iteration-based loop, checkpoints, DDP.

``sisr train RECIPE.yaml --out RUN`` (see :mod:`sisr.cli.train`) is
``train(load_recipe(RECIPE), RUN)``. Heavy modules (torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sisr.train.config import Recipe, load_recipe, recipe_from_dict
    from sisr.train.loop import Trainer, TrainResult
    from sisr.train.run import train

_EXPORTS = {
    "Recipe": "sisr.train.config",
    "load_recipe": "sisr.train.config",
    "recipe_from_dict": "sisr.train.config",
    "TrainResult": "sisr.train.loop",
    "Trainer": "sisr.train.loop",
    "train": "sisr.train.run",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sisr.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Recipe", "TrainResult", "Trainer", "load_recipe", "recipe_from_dict", "train"]
