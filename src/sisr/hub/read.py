"""Step 1 of loading a foreign file: read its content without running any of its code.

safetensors files give a flat ``{name: tensor}`` dict; ``torch.save`` files (zip or legacy)
are read by :func:`sisr.hub.torchfile.read_torch_file` (sizes checked before allocating,
every pickled class other than tensors and containers kept as an inert record, whole-model
pickles flattened to their state dicts). The next step is :mod:`sisr.hub.unwrap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sisr.errors import WeightsError
from sisr.hub.torchfile import read_torch_file
from sisr.hub.unpickle import classes_in, holds_tensors, plain
from sisr.hub.weights import read_tensors


def looks_like_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte little-endian header length, then ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def read_foreign_state_dict(path: str | Path) -> Any:
    """Load a checkpoint's raw content without executing pickled code.

    Returns whatever the file holds (usually a dict, possibly nested), with whole-model
    pickles flattened to their state dicts. safetensors files give a flat
    ``{name: tensor}`` dict. ``torch.save`` files are read by
    :func:`sisr.hub.torchfile.read_torch_file` (sizes checked before allocating, other
    pickled objects kept as inert records).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        return read_tensors(path)
    raw = read_torch_file(path)
    content = plain(raw)
    names = classes_in(raw)
    if names and not holds_tensors(content):
        raise WeightsError(
            f"{path}: refused: the checkpoint holds pickled objects ({', '.join(names[:8])}) "
            "and no tensors that can be read without running its code (sisr never runs "
            "pickled code)"
        )
    return content


__all__ = ["looks_like_safetensors", "read_foreign_state_dict"]
