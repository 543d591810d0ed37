"""The wall-clock training budget and the learning-rate schedule shared by both stages."""

from __future__ import annotations

import pytest

from livercad.runtime import budget as budget_mod
from livercad.runtime.budget import TimeBudget, lr_factor


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _FakeTrainer:
    should_stop = False


def _started(monkeypatch) -> tuple[_Clock, TimeBudget, _FakeTrainer]:
    """A 100-s budget (10 validation batches, 1000 steps) started on a fake clock."""
    clock = _Clock()
    monkeypatch.setattr(budget_mod.time, "monotonic", clock)
    budget, trainer = TimeBudget(budget_s=100.0, n_val_batches=10, total_steps=1000), _FakeTrainer()
    budget.on_train_start(trainer, None)
    return clock, budget, trainer


def _validate(clock: _Clock, budget: TimeBudget, trainer: _FakeTrainer, seconds: float) -> None:
    budget.on_validation_start(trainer, None)
    clock.now += seconds
    budget.on_validation_end(trainer, None)


def test_time_budget_stops_before_the_closing_validation_would_overrun(monkeypatch):
    clock, budget, trainer = _started(monkeypatch)
    steps = 0
    while not trainer.should_stop:
        clock.now += 2.0  # 2 s per step -> closing validation estimated at 0.8 * 10 * 2 = 16 s
        budget.on_train_batch_end(trainer)
        steps += 1
    assert steps == 41 and budget.stopped  # 82 s + one more 2 s step + 16 s validation reaches 100 s
    _validate(clock, budget, trainer, 30.0)  # measured validations replace the estimate
    assert budget.last_val_s == 30.0 and budget.deadline() == 70.0


def test_lr_schedule_follows_steps_unless_the_run_lags_the_time_budget(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(budget_mod.time, "monotonic", clock)
    budget = TimeBudget(budget_s=100.0, n_val_batches=0, total_steps=100)
    budget.on_train_start(None, None)
    clock.now += 10.0
    assert budget.progress(50) == 0.5 and not budget.time_bound  # ahead of pace: step-driven
    clock.now += 60.0
    assert budget.progress(50) == pytest.approx(0.7) and budget.time_bound  # 70 s of 100 s: time-driven
    assert lr_factor(0.0) == pytest.approx(0.1) and lr_factor(1.0) == pytest.approx(0.02)
    assert lr_factor(0.5) > lr_factor(0.9) > lr_factor(1.0)


def test_a_scheduled_validation_that_uses_up_the_budget_ends_the_run(monkeypatch):
    """No extra step and second validation after an epoch-end validation that left no room for them."""
    clock, budget, trainer = _started(monkeypatch)
    for _ in range(20):  # 40 s of steps, then a 10-s validation: 50 s, room left
        clock.now += 2.0
        budget.on_train_batch_end(trainer)
    _validate(clock, budget, trainer, 10.0)
    assert not trainer.should_stop
    for _ in range(18):  # 36 s more: 86 s, and 86 + 2 < 100 - 10, so the steps go on
        clock.now += 2.0
        budget.on_train_batch_end(trainer)
    assert not trainer.should_stop
    _validate(clock, budget, trainer, 10.0)  # the epoch-end validation: 96 s
    assert trainer.should_stop and budget.stopped  # 96 + 2 + 10 > 100: this validation was the last
