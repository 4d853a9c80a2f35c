"""Strict loading: a state dict goes into a network exactly, or one error lists every problem.

Shared by sisr's own weights format (:mod:`sisr.hub.weights`), the build step of foreign files
(:mod:`sisr.hub.build`) and training (resume, warm starts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from torch import nn

from sisr.errors import WeightsError


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` / DataParallel / DDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


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
        desc = (
            f"{what}({json.dumps(hparams, sort_keys=True, default=str)})"
            if hparams is not None
            else what
        )
        raise WeightsError(f"{source}: weights do not match {desc}: " + "; ".join(problems))
    expected = target.state_dict()
    cast = {
        k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state_dict.items()
    }
    target.load_state_dict(cast, strict=True)


__all__ = ["load_state_dict_strict", "state_dict_mismatches", "unwrap_model"]
