"""Budgeted training: the schedule laid out over wall-clock seconds, across resumes."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import sisr.train.loop as loop_mod
from sisr.cli.main import main
from sisr.errors import ConfigError
from sisr.train.config import load_recipe
from sisr.train.loop import CHECKPOINT_DIR, LAST, WEIGHTS, Trainer
from sisr.train.schedule import budget_position, lr_factor


class FakeClock:
    """A clock that only moves when a training update is made (one second each)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        loop_mod,
        "time",
        types.SimpleNamespace(monotonic=fake.monotonic, perf_counter=fake.perf_counter),
    )
    return fake


def _recording_trainer(
    recipe_path: Path, out: Path, clock: FakeClock, *, resume: bool = False
) -> tuple[Trainer, list[tuple[float, float]]]:
    recipe = load_recipe(recipe_path) if not resume else load_recipe(out / "recipe.yaml")
    trainer = Trainer(recipe, out, resume=resume)
    seen: list[tuple[float, float]] = []
    step = trainer.step

    def timed_step(lr: torch.Tensor, hr: torch.Tensor) -> Any:
        out_ = step(lr, hr)
        seen.append((trainer.position, trainer.optimizer.param_groups[0]["lr"]))
        clock.now += 1.0
        return out_

    trainer.step = timed_step  # type: ignore[method-assign]
    return trainer, seen


def test_budget_position_maps_time_onto_the_nominal_schedule() -> None:
    assert budget_position(0.0, 10.0, 500) == 0.0
    assert budget_position(5.0, 10.0, 500) == 250.0
    assert budget_position(30.0, 10.0, 500) == 500.0
    with pytest.raises(ValueError):
        budget_position(1.0, 0.0, 500)


def test_budget_ends_annealed_at_the_deadline(
    make_recipe: Callable[..., Path], tmp_path: Path, clock: FakeClock
) -> None:
    # nominal 1000 iterations, warm-up 100 of them; 10 "seconds" of budget = 10 updates
    path = make_recipe(
        iterations=1000,
        budget=10,
        schedule={"name": "cosine", "min_lr": 1e-6, "warmup": 100},
        val={"datasets": []},
        checkpoint={"interval": 0},
    )
    trainer, seen = _recording_trainer(path, tmp_path / "run", clock)
    result = trainer.run()
    assert result.iterations == 10
    cfg = trainer.recipe.schedule
    positions = [p for p, _ in seen]
    assert positions == pytest.approx([100.0 * i for i in range(10)])
    for pos, rate in seen:
        assert rate == pytest.approx(1e-3 * lr_factor(cfg, pos, 1000, 1e-3))
    # warm-up is a tenth of the budget: the first update runs at the ramp's start
    assert seen[0][1] == pytest.approx(1e-3 * 1 / 100)
    # the last update sits at 90% of the cosine: far below the peak, and monotone down
    rates = [r for _, r in seen[1:]]
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.05 * 1e-3
    from sisr.hub.weights import read_metadata

    meta = read_metadata(tmp_path / "run" / WEIGHTS)
    assert meta["extra"]["budget"] == 10
    assert meta["extra"]["train_seconds"] == pytest.approx(10.0)


def test_budget_is_counted_across_resumes(
    make_recipe: Callable[..., Path], tmp_path: Path, clock: FakeClock
) -> None:
    path = make_recipe(
        iterations=100,
        budget=8,
        schedule={"name": "cosine", "min_lr": 0.0},
        val={"datasets": []},
        checkpoint={"interval": 0},
    )
    run = tmp_path / "run"
    first, seen1 = _recording_trainer(path, run, clock)
    res1 = first.run(max_seconds=3)  # a chunk: stops after 3 s, 3 updates
    assert res1.iterations == 3
    state = torch.load(run / CHECKPOINT_DIR / LAST, weights_only=True)
    assert state["elapsed"] == pytest.approx(3.0)
    clock.now += 500.0  # time between chunks (machine restarts) does not count
    second, seen2 = _recording_trainer(path, run, clock, resume=True)
    res2 = second.run()
    assert res2.iterations == 8
    assert [p for p, _ in seen1 + seen2] == pytest.approx([12.5 * i for i in range(8)])


def test_budget_must_be_positive_seconds(
    make_recipe: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in (0, -5, "nan", 1e12):
        with pytest.raises(ConfigError, match="budget"):
            load_recipe(make_recipe(budget=bad))
    code = main(["train", str(make_recipe()), "--out", str(tmp_path / "r"), "--budget", "-1"])
    assert code != 0
    assert "budget" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
