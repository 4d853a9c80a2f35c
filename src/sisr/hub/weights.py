"""The self-describing weights format: safetensors + JSON metadata.

A sisr weights file is a plain ``.safetensors`` file whose tensors are the
model's ``state_dict()`` and whose header metadata (a ``str -> str`` map) holds
one JSON document per key:

==================  ============================================================
key                 JSON value
==================  ============================================================
``format``          ``"sisr.weights"``
``format_version``  ``1``
``arch``            architecture id, a key of :data:`sisr.archs.ARCHS`
``hparams``         constructor kwargs: ``ARCHS[arch](**hparams)`` rebuilds it
``scale``           upscaling factor (also inside ``hparams``)
``sisr_version``    version of sisr that wrote the file
``created``         UTC time, ISO 8601
``storage_dtype``   ``"float32"`` / ``"float16"`` / ``"bfloat16"`` (floating tensors)
``recipe``          training recipe (object) or ``null``
``iterations``      training iterations (int) or ``null``
``metrics``         evaluation results (list or object) or ``null``
``extra``           free-form object (e.g. conversion source) or ``null``
==================  ============================================================

So a file alone is enough to rebuild and run the network; no code or config
has to travel with it. Loading is strict: any missing, unexpected or
wrongly-shaped tensor is an error listing all of them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sisr.archs.base import SRModel
from sisr.errors import ConfigError, WeightsError
from sisr.hub.strict import load_state_dict_strict, state_dict_mismatches, unwrap_model
from sisr.hub.validate import (
    check_finite,
    check_hparam_ranges,
    check_layout,
    not_safetensors_error,
    read_header,
)
from sisr.io.atomic import atomic_path

FORMAT = "sisr.weights"
FORMAT_VERSION = 1

_STORAGE_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"cannot store {what} in the weights metadata: {exc}") from exc


def export_state_dict(
    model: nn.Module, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` as independent contiguous CPU tensors, floats cast to ``dtype``.

    Cloning breaks storage sharing (tied or viewed tensors), which safetensors refuses.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in unwrap_model(model).state_dict().items():
        t = value.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[key] = t.contiguous().clone()
    return out


def save_weights(
    model: nn.Module,
    path: str | Path,
    *,
    recipe: dict | None = None,
    iterations: int | None = None,
    metrics: list | dict | None = None,
    extra: dict | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write ``model`` as a self-describing sisr weights file (atomically).

    Args:
        model: an :class:`~sisr.archs.SRModel` (compile/DDP wrappers are unwrapped)
            whose ``arch_id`` is registered in :data:`sisr.archs.ARCHS`.
        path: destination ``.safetensors`` file.
        recipe, iterations, metrics, extra: provenance stored as JSON.
        dtype: storage dtype of floating tensors (``torch.float16`` halves the
            file); :func:`load_model` casts back to the model's float32.
    """
    from safetensors.torch import save_file

    from sisr.archs import ARCHS
    from sisr.version import __version__

    model = unwrap_model(model)
    arch = getattr(model, "arch_id", None)
    hparams = getattr(model, "hparams", None)
    if arch is None or not isinstance(hparams, dict):
        raise WeightsError(
            f"{path}: {type(model).__name__} is not an SRModel (needs arch_id and hparams)"
        )
    if arch not in ARCHS:
        raise WeightsError(
            f"{path}: architecture {arch!r} is not registered in sisr.archs.ARCHS, "
            "so the file could not be loaded back"
        )
    storage = dtype if dtype is not None else torch.float32
    if storage not in _STORAGE_DTYPES:
        raise WeightsError(f"{path}: unsupported storage dtype {dtype}; use float32/16 or bfloat16")
    scale = int(getattr(model, "scale", hparams.get("scale", 0)))
    metadata = {
        "format": _json(FORMAT, "format"),
        "format_version": _json(FORMAT_VERSION, "format_version"),
        "arch": _json(arch, "arch"),
        "hparams": _json(hparams, "hparams"),
        "scale": _json(scale, "scale"),
        "sisr_version": _json(__version__, "sisr_version"),
        "created": _json(
            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "created"
        ),
        "storage_dtype": _json(_STORAGE_DTYPES[storage], "storage_dtype"),
        "recipe": _json(recipe, "recipe"),
        "iterations": _json(None if iterations is None else int(iterations), "iterations"),
        "metrics": _json(metrics, "metrics"),
        "extra": _json(extra, "extra"),
    }
    tensors = export_state_dict(model, storage)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except OSError as e:
        raise WeightsError(f"{path}: cannot write weights ({e.strerror or e})") from None


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value  # foreign safetensors may carry plain strings


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded header metadata of a safetensors file (empty dict if it has none).

    Raises:
        WeightsError: the file is missing or not a valid safetensors file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise not_safetensors_error(path, exc) from exc
    return {k: _decode(v) for k, v in raw.items()}


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on CPU (WeightsError if unreadable)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # truncated data, bad header, unknown dtype...
        raise not_safetensors_error(path, exc) from exc


def model_from_metadata(
    meta: Mapping[str, Any], *, source: str, device: str | torch.device | None = None
) -> SRModel:
    """Build the (randomly initialised) network described by a weights file's metadata.

    hparams are range-checked first; ``device="meta"`` builds it without allocating, to
    compare with the file's tensors (:func:`sisr.hub.validate.check_layout`).
    """
    from sisr.archs import ARCHS

    if meta.get("format") != FORMAT or "arch" not in meta:
        raise WeightsError(
            f"{source}: not a sisr weights file (no sisr metadata); "
            "convert foreign checkpoints with `sisr convert`"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(
            f"{source}: weights format version {version!r} is not supported "
            f"(this sisr reads up to {FORMAT_VERSION}); upgrade sisr"
        )
    arch = meta["arch"]
    if arch not in ARCHS:
        known = ", ".join(sorted(ARCHS))
        raise WeightsError(f"{source}: unknown architecture {arch!r}; known: {known}")
    hparams = meta.get("hparams")
    if not isinstance(hparams, dict):
        raise WeightsError(f"{source}: metadata 'hparams' is not an object")
    check_hparam_ranges(hparams, source=source)
    try:
        with torch.device(device) if device is not None else contextlib.nullcontext():
            return ARCHS[arch](**hparams)
    except (ConfigError, TypeError, ValueError, RuntimeError, MemoryError) as exc:
        raise WeightsError(
            f"{source}: cannot build {arch!r} from hparams {hparams}: {exc}"
        ) from exc


def load_weights_file(path: str | Path) -> SRModel:
    """Rebuild and strictly load the model stored in a sisr weights file (CPU, float32)."""
    path = Path(path)
    meta = read_metadata(path)
    # Nothing the metadata asks for is allocated before it matches the file's tensors.
    skeleton = model_from_metadata(meta, source=str(path), device="meta")
    check_layout(unwrap_model(skeleton).state_dict(), read_header(path), source=str(path))
    model = model_from_metadata(meta, source=str(path))
    tensors = read_tensors(path)
    check_finite(tensors, source=str(path))
    load_state_dict_strict(model, tensors, source=str(path))
    return model


def is_sisr_weights(path: str | Path) -> bool:
    """True for a safetensors file with sisr metadata (anything else is a foreign file)."""
    try:
        return read_metadata(path).get("format") == FORMAT
    except WeightsError:
        return False


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "export_state_dict",
    "is_sisr_weights",
    "load_state_dict_strict",
    "load_weights_file",
    "model_from_metadata",
    "read_metadata",
    "read_tensors",
    "save_weights",
    "state_dict_mismatches",
    "unwrap_model",
]
