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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` / DataParallel / DDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


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

    from sisr import __version__
    from sisr.archs import ARCHS

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


def state_dict_mismatches(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable problems preventing a strict load (empty list = loadable)."""
    expected = unwrap_model(model).state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for one, many, items in (
        ("missing key", "missing keys", missing),
        ("unexpected key", "unexpected keys", unexpected),
        ("shape mismatch", "shape mismatches", shapes),
    ):
        if items:
            problems.append(f"{len(items)} {one if len(items) == 1 else many}: {', '.join(items)}")
    return problems


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Load ``state_dict`` into ``model`` exactly, or raise one WeightsError listing all problems.

    Floating tensors are cast to the model's dtype (fp16 storage loads into fp32).
    """
    target = unwrap_model(model)
    problems = state_dict_mismatches(target, state_dict)
    if problems:
        what = getattr(target, "arch_id", type(target).__name__)
        hparams = getattr(target, "hparams", None)
        desc = f"{what}({_json(hparams, 'hparams')})" if hparams is not None else what
        raise WeightsError(f"{source}: weights do not match {desc}: " + "; ".join(problems))
    expected = target.state_dict()
    cast = {
        k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state_dict.items()
    }
    target.load_state_dict(cast, strict=True)


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


def resolve_weights(name_or_path: str | Path, *, progress: bool = True) -> Path | None:
    """The weights file behind a path or a named entry; ``None`` for ``bicubic``.

    Named downloadable weights are fetched into ``cache_dir()/weights``.
    """
    from sisr.hub import names

    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a weights file")
    name = str(name_or_path)
    if names.BICUBIC_NAME.match(name):
        return None
    entry = names.WEIGHTS.get(name)
    if entry is not None:
        shipped = names.shipped_path(entry)
        if shipped is not None:
            if not shipped.is_file():
                raise WeightsError(f"{name}: shipped weights file {shipped} is missing")
            return shipped
        from sisr.hub.download import cache_dir, fetch

        assert entry.url is not None
        return fetch(
            entry.url,
            entry.sha256,
            cache_dir=cache_dir() / "weights",
            filename=f"{entry.name}.safetensors",
            progress=progress,
        )
    from sisr.hub.catalog import catalog, fetch_entry

    published = catalog().get(name)
    if published is not None:  # a published file (OpenModelDB facts), verified download
        return fetch_entry(published, progress=progress)
    if path.suffix or len(path.parts) > 1:
        raise WeightsError(f"{path}: no such weights file")
    known = (
        ", ".join(names.known_names()) + " (and the published weights of `sisr models --catalog`)"
    )
    from sisr.archs import PRESETS

    if name in PRESETS:
        raise WeightsError(
            f"{name!r} is a preset without named weights: train it (sisr train) or convert "
            f"a checkpoint (sisr convert) and pass the .safetensors file; named weights: {known}"
        )
    raise WeightsError(
        f"unknown weights name {name!r}: not a file and not a named weights entry; "
        f"known names: {known}"
    )


def is_sisr_weights(path: str | Path) -> bool:
    """True for a safetensors file with sisr metadata (anything else is a foreign file)."""
    try:
        return read_metadata(path).get("format") == FORMAT
    except WeightsError:
        return False


def _load_foreign(path: Path, scale: int | None) -> SRModel:
    """A .pth / .pt / foreign safetensors file: architecture detected from its tensors."""
    from sisr.hub.detect import load_detected

    return load_detected(path, scale=scale).model


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    scale: int | None = None,
    progress: bool = True,
) -> SRModel:
    """Load a ready-to-run SR model (eval mode) from a weights file or a name.

    Resolution: an existing file path; ``bicubic`` / ``bicubic-xN`` (the
    parameter-free baseline, scale from the suffix or ``scale=``); a name from
    :data:`sisr.hub.names.WEIGHTS` (shipped in the package, or downloaded and
    verified into the cache). Anything else is a WeightsError listing the names.

    Args:
        device, dtype: where and in which float dtype the model ends up.
        scale: optional expected scale; a file with another scale is an error.
        progress: show a progress bar when downloading.
    """
    from sisr.hub import names

    path = resolve_weights(name_or_path, progress=progress)
    if path is None:
        from sisr.archs import PRESETS

        m = names.BICUBIC_NAME.match(str(name_or_path))
        assert m is not None
        named_scale = int(m.group(1)) if m.group(1) else None
        if named_scale is not None and scale is not None and named_scale != scale:
            raise WeightsError(f"{name_or_path}: scale x{named_scale} but scale={scale} requested")
        chosen = named_scale or scale
        if chosen is None:
            raise WeightsError(
                f"{name_or_path!s}: bicubic needs a scale: use 'bicubic-x4' or pass scale=4"
            )
        model = PRESETS["bicubic"](scale=chosen)
    else:
        model = load_weights_file(path) if is_sisr_weights(path) else _load_foreign(path, scale)
        if scale is not None and int(model.scale) != int(scale):
            raise WeightsError(
                f"{path}: weights are for x{model.scale}, but x{scale} was requested"
            )
    model = model.to(device)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "export_state_dict",
    "is_sisr_weights",
    "load_model",
    "load_state_dict_strict",
    "load_weights_file",
    "model_from_metadata",
    "read_metadata",
    "read_tensors",
    "resolve_weights",
    "save_weights",
    "state_dict_mismatches",
    "unwrap_model",
]
