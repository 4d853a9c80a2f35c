"""Step 4 of loading a foreign file: build the detected network and load its tensors.

A match's hparams come from the file, so they get the range checks of safetensors metadata,
and the network is built on the meta device and compared with the tensors before it is built
for real: what is allocated is then what the file stores. Loading is strict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from sisr.archs._detect import Match
from sisr.archs.base import SRModel
from sisr.errors import WeightsError
from sisr.hub.strict import load_state_dict_strict, state_dict_mismatches
from sisr.hub.validate import check_hparam_ranges


def _build(arch: str, hparams: dict[str, Any], device: str | None) -> SRModel:
    from sisr.archs import ARCHS

    if device is None:
        return ARCHS[arch](**hparams)
    with torch.device(device):
        return ARCHS[arch](**hparams)


def _with_step_counters(model: SRModel, sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Checkpoints from before torch 0.4.1 have no BatchNorm step counter; it only matters
    for momentum=None training, so a zero is exact for inference."""
    out = dict(sd)
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in out:
            out[key] = torch.zeros(value.shape, dtype=value.dtype)
    return out


def try_build(match: Match, scale: int) -> SRModel | str:
    """The network with the match's tensors loaded strictly, or the problems as text.

    The detected hparams come from the file, so they get the range checks of safetensors
    metadata, and the network is built on the meta device and compared with the tensors
    before it is built for real: what is allocated is then what the file stores.
    """
    hparams = {**match.hparams, "scale": scale}
    try:
        check_hparam_ranges(hparams, source=match.arch)
    except WeightsError as exc:
        return str(exc).removeprefix(f"{match.arch}: ")
    try:
        skeleton = _build(match.arch, hparams, "meta")
    except (NotImplementedError, RuntimeError):
        skeleton = None  # a constructor computing with tensor values: shapes come below
    except Exception as exc:  # a detector's hparams the constructor refuses
        return f"cannot build {match.arch} x{scale} {match.hparams}: {exc}"
    if skeleton is not None:
        problems = state_dict_mismatches(skeleton, _with_step_counters(skeleton, match.state_dict))
        if problems:
            return "; ".join(problems)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in match.state_dict.items()}
    try:
        model = _build(match.arch, hparams, None)
    except Exception as exc:  # a detector's hparams the constructor refuses
        return f"cannot build {match.arch} x{scale} {match.hparams}: {exc}"
    sd = _with_step_counters(model, sd)
    problems = state_dict_mismatches(model, sd)
    if problems:
        return "; ".join(problems)
    load_state_dict_strict(model, sd, source=match.arch)
    return model.eval()


def build_detected(match: Match, scale: int, *, source: str) -> SRModel:
    built = try_build(match, scale)
    if isinstance(built, str):
        raise WeightsError(f"{source}: detected {match.arch} x{scale} but {built}")
    return built


__all__ = ["build_detected", "try_build"]
