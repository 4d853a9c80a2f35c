"""Learning-rate schedules evaluated per iteration.

The rate for update ``it`` (0-based: the update about to be made) is
``base_lr * lr_mult * factor(it) * scale`` where ``factor`` is a pure function of
the recipe's schedule and ``scale`` is the product of the NaN-guard's rollback
cuts. Because the factor is recomputed from the iteration, resuming needs only
the iteration and ``scale`` — no hidden scheduler counters to drift.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch

from sisr.train.config import ScheduleConfig


def lr_factor(cfg: ScheduleConfig, iteration: float, total: int, base_lr: float) -> float:
    """Multiplier of the base rate for 0-based update ``iteration`` of ``total``.

    multistep: ``gamma ** #(milestones <= iteration)`` (the milestone-th update is the
    first at the lower rate); step: ``gamma ** (iteration // step_size)``; cosine:
    from 1 down to ``min_lr / base_lr`` over the updates after warm-up; the linear
    warm-up multiplies the first ``warmup`` updates by a ramp from ``warmup_start``
    towards 1.
    """
    if cfg.name == "multistep":
        decay = cfg.gamma ** bisect.bisect_right(cfg.milestones, iteration)
    elif cfg.name == "step":
        decay = cfg.gamma ** (iteration // cfg.step_size)
    elif cfg.name == "cosine":
        floor = min(cfg.min_lr / base_lr, 1.0) if base_lr > 0 else 0.0
        span = max(total - cfg.warmup - 1, 1)
        t = min(max(iteration - cfg.warmup, 0) / span, 1.0)
        decay = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        decay = 1.0
    if iteration < cfg.warmup:
        ramp = cfg.warmup_start + (1.0 - cfg.warmup_start) * (iteration + 1) / cfg.warmup
        decay *= ramp
    return decay


def budget_position(elapsed: float, budget: float, total: int) -> float:
    """Nominal iteration of a budgeted run after ``elapsed`` of its ``budget`` seconds.

    The schedule written for ``total`` iterations is mapped onto the budget linearly:
    ``total * elapsed / budget``, clamped to ``[0, total]``, so the last update before the
    deadline runs at (nearly) the schedule's final rate.
    """
    if budget <= 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    return total * min(max(elapsed / budget, 0.0), 1.0)


class LRSchedule:
    """Sets every parameter group's rate for the coming update.

    Each group keeps its own ``initial_lr`` (base rate times its ``lr_mult``).
    ``scale`` starts at 1 and is multiplied down by NaN-guard rollbacks; it is the
    only state besides the iteration.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total: int) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.total = total
        self.scale = 1.0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lr = float(optimizer.param_groups[0]["initial_lr"])

    def apply(self, iteration: float) -> float:
        """Set the rates for update ``iteration`` (a fractional nominal iteration for a
        budgeted run); returns the rate of the first group."""
        factor = lr_factor(self.cfg, iteration, self.total, self.base_lr) * self.scale
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])


__all__ = ["LRSchedule", "budget_position", "lr_factor"]
