"""The ``sisr eval`` engine: paper-protocol evaluation of SR models on benchmarks.

* :func:`evaluate` scores a model (module, callable, name or ``"bicubic"``) on a
  benchmark and returns an :class:`EvalResult` (means and per-image scores);
  the training loop's validation calls it too, with pairs from :func:`load_pairs`.
* :mod:`sisr.evaluate.report`: table / JSON / CSV output.
* :mod:`sisr.evaluate.compare`: side-by-side comparison figures.
"""

from sisr.evaluate.runner import (
    BICUBIC,
    EvalPair,
    EvalResult,
    ImageScore,
    evaluate,
    load_pairs,
    make_pair,
    make_pairs,
    read_images,
)

__all__ = [
    "BICUBIC",
    "EvalPair",
    "EvalResult",
    "ImageScore",
    "evaluate",
    "load_pairs",
    "make_pair",
    "make_pairs",
    "read_images",
]
