"""Weights files, named weights and verified downloads.

Public API (imported lazily so that ``sisr.hub.download`` stays torch-free):

* :func:`save_weights`, :func:`load_model`, :func:`read_metadata` (``sisr.hub.weights``)
* :func:`fetch`, :func:`cache_dir` (``sisr.hub.download``)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sisr.hub.download import cache_dir, fetch
    from sisr.hub.load import load_model
    from sisr.hub.weights import read_metadata, save_weights

_EXPORTS = {
    "save_weights": "sisr.hub.weights",
    "load_model": "sisr.hub.load",
    "read_metadata": "sisr.hub.weights",
    "fetch": "sisr.hub.download",
    "cache_dir": "sisr.hub.download",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sisr.hub' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["cache_dir", "fetch", "load_model", "read_metadata", "save_weights"]
