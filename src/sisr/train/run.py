"""The training entry point: pick the trainer for a recipe and run it (DDP under torchrun).

It lives apart from :mod:`sisr.train.loop` so that imports run one way: ``run`` ->
``gan`` -> ``loop`` (GANTrainer extends Trainer; the loop never needs the GAN code).
"""

from __future__ import annotations

from pathlib import Path

from sisr.train import distributed as D
from sisr.train.checkpoint import read_any_weights
from sisr.train.config import Recipe
from sisr.train.gan import GANTrainer
from sisr.train.loop import Trainer, TrainResult


def train(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    max_seconds: float | None = None,
    vgg_weights: str | Path | None = None,
) -> TrainResult:
    """Train ``recipe`` into ``out_dir`` (see module docstring); DDP under torchrun.

    A recipe with a ``gan`` section trains adversarially (:class:`sisr.train.gan.GANTrainer`).
    ``vgg_weights``: the VGG file for perceptual losses (``--vgg-weights``).
    An unreadable ``init_from`` fails here, before the run folder or its log exist.
    """
    if init_from is not None:
        read_any_weights(init_from)  # WeightsError naming the file; the Trainer reads it again
    info = D.setup(recipe.device)
    try:
        cls: type[Trainer] = GANTrainer if recipe.gan is not None else Trainer
        trainer = cls(
            recipe,
            out_dir,
            resume=resume,
            init_from=init_from,
            dist_info=info,
            vgg_weights=vgg_weights,
        )
        return trainer.run(max_seconds=max_seconds)
    finally:
        D.cleanup(info)


__all__ = ["train"]
