"""Exponential moving average of a model's weights.

``shadow = d * shadow + (1 - d) * weights`` after every update (buffers are
copied). Before ``start`` the shadow simply tracks the weights. With ``warmup``
the decay ramps up as ``d = min(decay, (1 + n) / (10 + n))`` over the ``n``
updates since ``start``, so the random initial weights do not linger in the
average of a short run (at decay 0.999 they would still weigh 13% after 2000
updates).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from sisr.hub.strict import unwrap_model


class EMA:
    """Keeps an eval-mode copy of ``model`` whose floating tensors are averaged."""

    def __init__(self, model: nn.Module, decay: float, start: int = 0, warmup: bool = True) -> None:
        self.decay = float(decay)
        self.start = int(start)
        self.warmup = bool(warmup)
        self.shadow: nn.Module = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        src = unwrap_model(model).state_dict()
        dst = self.shadow.state_dict()
        return [dst[k] for k in dst], [src[k] for k in dst]

    def decay_at(self, iteration: float) -> float:
        """Decay used for update ``iteration`` (0-based); 0 before ``start`` (a copy)."""
        if iteration < self.start:
            return 0.0
        if not self.warmup:
            return self.decay
        n = iteration - self.start
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module, iteration: float) -> None:
        """Fold the weights after update ``iteration`` (0-based) into the average."""
        dst, src = self._pairs(model)
        floats = [(d, s) for d, s in zip(dst, src, strict=True) if d.is_floating_point()]
        others = [(d, s) for d, s in zip(dst, src, strict=True) if not d.is_floating_point()]
        if floats:
            fd = [d for d, _ in floats]
            fs = [s.detach() for _, s in floats]
            decay = self.decay_at(iteration)
            if decay == 0.0:
                torch._foreach_copy_(fd, fs)
            else:
                # one fused kernel for all tensors instead of a Python loop of lerps
                torch._foreach_lerp_(fd, fs, 1.0 - decay)
        for d, s in others:
            d.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "start": self.start,
            "warmup": self.warmup,
            "shadow": self.shadow.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shadow.load_state_dict(state["shadow"])


__all__ = ["EMA"]
