"""Training checkpoints: everything needed for an exact resume, plain data only (what
``torch.load(weights_only=True)`` accepts; sisr reads them with its own checked reader).

A checkpoint is a dict of tensors, dicts, lists, numbers, strings and ``None``
only (no pickled objects), so loading never executes code:

==============  ==================================================================
key             value
==============  ==================================================================
``format``      ``"sisr.train.checkpoint"`` / ``version`` 1
``iteration``   updates done (the next update is number ``iteration``, 0-based)
``model``       ``state_dict`` of the plain model (no DDP/compile prefixes)
``optimizer``   optimizer ``state_dict``
``schedule``    :class:`~sisr.train.schedule.LRSchedule` state (rollback scale)
``ema``         EMA state or ``None``; ``scaler``: GradScaler state or ``None``
``ranks``       one entry per rank: ``{"rng": ..., "batcher": ...}`` (sampler
                position and RNG streams differ per rank)
``best``        ``{"metric": float, "iteration": int}``
``guard``       NaN-guard counters; ``history``: validation results so far
``recipe``      the resolved recipe (plain mapping)
==============  ==================================================================

Files are written atomically (:func:`sisr.io.atomic.atomic_path`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sisr.errors import WeightsError
from sisr.hub.strict import unwrap_model
from sisr.io.atomic import atomic_path

FORMAT = "sisr.train.checkpoint"
VERSION = 1
# What to do with weights that are not a sisr checkpoint (the safe way in: no pickle).
_FOREIGN_HINT = (
    "for weights from elsewhere, convert them first (sisr convert {path} OUT.safetensors) "
    "and pass the .safetensors file"
)


# --- RNG states as plain data -----------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as tensors/numbers."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    name, keys, pos, has_gauss, cached = np_state
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "mt": torch.tensor(mt, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["mt"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        (
            nps["name"],
            nps["keys"].numpy().astype(np.uint32),
            nps["pos"],
            nps["has_gauss"],
            nps["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i], i)


# --- files ---------------------------------------------------------------------------


def to_cpu(value: Any) -> Any:
    """Deep copy of nested containers with every tensor moved to CPU (tuples kept)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    return value


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (plain data) atomically, tagged with the format and version."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; WeightsError (sisr's own one-line message) when it is not one.

    Read by :func:`sisr.hub.torchfile.read_torch_file` in strict mode: tensors and plain
    data only (as ``torch.load(weights_only=True)``), every size checked before it is
    allocated, and torch's own error text (with its advice to disable the safe loader)
    never shown.
    """
    from sisr.hub.torchfile import read_torch_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint")
    state = read_torch_file(
        path, strict=True, hint=_FOREIGN_HINT.format(path=path), what="training checkpoint"
    )
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise WeightsError(
            f"{path}: not a sisr training checkpoint; {_FOREIGN_HINT.format(path=path)}"
        )
    if state.get("version") != VERSION:
        raise WeightsError(f"{path}: checkpoint version {state.get('version')} is not supported")
    return state


def is_finite_model(model: nn.Module) -> bool:
    """True when every floating tensor of the model is finite (one sync, not one per tensor)."""
    tensors = [t for t in unwrap_model(model).state_dict().values() if t.is_floating_point()]
    if not tensors:
        return True
    flags = torch.stack([torch.isfinite(t).all() for t in tensors])
    return bool(flags.all())


# --- warm starts ---------------------------------------------------------------------


def read_any_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Model tensors from a training checkpoint (``.pt``), a sisr weights file, or named
    weights (``default-x2``: the shipped or catalogue file behind the name)."""
    path = Path(path)
    if not path.is_file() and len(path.parts) == 1 and not path.suffix:
        from sisr.hub.load import resolve_weights

        try:
            named = resolve_weights(str(path), progress=False)
        except WeightsError:
            named = None
        if named is not None:
            path = named
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint, weights file or weights name")
    if path.suffix == ".safetensors":
        from sisr.hub.weights import read_tensors

        return read_tensors(path)
    state = load_checkpoint(path)
    model = state.get("model")
    if not isinstance(model, dict):
        raise WeightsError(f"{path}: checkpoint has no model weights")
    return model


def init_from(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``path`` whose name and shape match ``model``'s.

    Used for warm starts such as x2 -> x4 (the body matches, the upsampler does
    not). Returns ``(loaded, skipped)`` where ``skipped`` explains each tensor of
    the model that kept its initial value. WeightsError if nothing matched.
    """
    source = read_any_weights(path)
    target = unwrap_model(model).state_dict()
    loaded: list[str] = []
    skipped: list[str] = []
    for key, value in target.items():
        if key not in source:
            skipped.append(f"{key} (not in {Path(path).name})")
        elif tuple(source[key].shape) != tuple(value.shape):
            skipped.append(
                f"{key} (shape {tuple(source[key].shape)} there, {tuple(value.shape)} here)"
            )
        else:
            loaded.append(key)
    if not loaded:
        raise WeightsError(f"{path}: no tensor matches the model by name and shape")
    with torch.no_grad():
        for key in loaded:
            target[key].copy_(source[key].to(target[key].dtype))
    return loaded, skipped


__all__ = [
    "FORMAT",
    "VERSION",
    "init_from",
    "is_finite_model",
    "load_checkpoint",
    "read_any_weights",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "to_cpu",
]
