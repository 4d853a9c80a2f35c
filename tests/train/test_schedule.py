"""Per-iteration learning-rate factors and the schedule object."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sisr.train.config import ScheduleConfig
from sisr.train.schedule import LRSchedule, lr_factor


def test_multistep_switches_at_the_milestone() -> None:
    cfg = ScheduleConfig(name="multistep", milestones=[3, 5], gamma=0.5)
    got = [lr_factor(cfg, i, 10, 1.0) for i in range(7)]
    assert got == [1, 1, 1, 0.5, 0.5, 0.25, 0.25]


def test_step_decay() -> None:
    cfg = ScheduleConfig(name="step", step_size=200000, gamma=0.5)
    assert lr_factor(cfg, 199999, 300000, 1e-4) == 1.0
    assert lr_factor(cfg, 200000, 300000, 1e-4) == 0.5
    cfg = ScheduleConfig(name="step", step_size=27000, gamma=0.333)
    assert lr_factor(cfg, 54000, 108000, 0.01) == pytest.approx(0.333**2)


def test_cosine_goes_from_one_to_the_floor() -> None:
    cfg = ScheduleConfig(name="cosine", min_lr=1e-5)
    total = 101
    assert lr_factor(cfg, 0, total, 1e-3) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, total, 1e-3) == pytest.approx((1 + 0.01) / 2)
    assert lr_factor(cfg, 100, total, 1e-3) == pytest.approx(0.01)
    values = [lr_factor(cfg, i, total, 1e-3) for i in range(total)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_linear_warmup_multiplies_the_start() -> None:
    cfg = ScheduleConfig(name="constant", warmup=4, warmup_start=0.2)
    got = [lr_factor(cfg, i, 10, 1.0) for i in range(6)]
    assert got == pytest.approx([0.4, 0.6, 0.8, 1.0, 1.0, 1.0])
    cos = ScheduleConfig(name="cosine", warmup=10)
    assert lr_factor(cos, 10, 111, 1.0) == pytest.approx(1.0)
    assert lr_factor(cos, 110, 111, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(lr_factor(cos, 4, 111, 1.0), 0.5)


def test_schedule_sets_every_group_and_keeps_multipliers() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}], lr=0.1)
    sched = LRSchedule(opt, ScheduleConfig(name="multistep", milestones=[2], gamma=0.1), 5)
    assert sched.apply(0) == pytest.approx(0.1)
    assert sched.apply(2) == pytest.approx(0.01)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.001)
    sched.scale = 0.5  # a NaN-guard rollback
    sched.apply(0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.005])
    other = LRSchedule(opt, sched.cfg, 5)
    other.load_state_dict(sched.state_dict())
    assert other.scale == 0.5
