"""Where an export starts: named weights or a weights file, loaded with its metadata.

An exported graph (TorchScript / ``.pt2``) is refused here with a message instead of being
re-traced: it holds no network to export, and loading one would run the code in it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sisr.export.graphs import graph_kind
from sisr.export.prepare import ExportError, export_metadata


def load_for_export(name_or_path: str | Path, scale: int | None = None) -> tuple[nn.Module, dict]:
    """Load named weights or a weights file; returns the model and :func:`export_metadata`."""
    from sisr.hub.load import load_model, resolve_weights
    from sisr.hub.weights import read_metadata
    from sisr.infer.upscaler import resolve_name

    name = resolve_name(name_or_path, scale)
    _refuse_graph_file(name)
    model = load_model(name, device="cpu", scale=scale, progress=True)
    path = resolve_weights(name)
    weights_meta = read_metadata(path) if path is not None else None
    meta = export_metadata(model, weights_meta)
    meta["source"] = str(name_or_path) if path is None else Path(path).name
    return model, meta


def _refuse_graph_file(name: str) -> None:
    """An exported graph holds no re-exportable network: say so instead of tracing it."""
    kind = Path(name).is_file() and graph_kind(name)
    if kind:
        what = "TorchScript" if kind == "torchscript" else "torch.export (.pt2)"
        raise ExportError(
            f"{name}: already an exported {what} graph; export from the original weights "
            f"(a .safetensors file or a model name), or run it as it is: sisr upscale -n {name}"
        )


__all__ = ["load_for_export"]
