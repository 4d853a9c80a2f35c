"""Step 2 of loading a foreign file: find the state dict inside the checkpoint's wrappers.

BasicSR keeps ``params_ema`` / ``params``, other trainers ``state_dict`` / ``model`` /
``net_g``; DataParallel / DDP prefix every key with ``module.`` and ``torch.compile`` with
``_orig_mod.``. The next step is :mod:`sisr.hub.detect`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from sisr.errors import WeightsError

StateDict = dict[str, Tensor]

# Wrapper keys, most preferred first: BasicSR keeps the EMA copy in params_ema.
WRAPPER_KEYS: tuple[str, ...] = ("params_ema", "params", "state_dict", "model", "net_g", "netG")
STRIP_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())
    )


def unwrap_state_dict(obj: Any, *, source: str = "checkpoint") -> StateDict:
    """Find the tensor dict inside common wrappers and strip shared prefixes.

    Wrappers are searched in :data:`WRAPPER_KEYS` order at each level, so
    ``{"params": ..., "params_ema": ...}`` yields the EMA weights.
    """
    seen = 0
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj), None)
        if inner is None:
            # A flat dict with a few non-tensor extras (e.g. "epoch") next to tensors.
            tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
            if tensors:
                obj = tensors
                break
            keys = ", ".join(str(k)[:40] for k in itertools.islice(obj, 10))
            raise WeightsError(
                f"{source}: no tensors found; top-level keys: {keys} "
                f"(known wrappers: {', '.join(WRAPPER_KEYS)})"
            )
        obj = inner
        seen += 1
        if seen > 8:
            raise WeightsError(f"{source}: checkpoint nested too deeply")
    sd: StateDict = {str(k): v for k, v in obj.items()}
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


__all__ = ["STRIP_PREFIXES", "WRAPPER_KEYS", "unwrap_state_dict"]
