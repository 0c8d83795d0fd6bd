"""Learning-rate schedules: warm-up, the linear decay over the budget, and how training applies them."""

import pytest
import torch

from s2s import checkpoint
from s2s.commands.train import run
from s2s.errors import S2SError
from s2s.training.schedule import budget_fraction, linear_decay_lr, warmup_factor
from tests.conftest import TINY, make_config


def test_warmup_rises_linearly_then_stops():
    assert [warmup_factor(step, 4) for step in range(5)] == [0.25, 0.5, 0.75, 1.0, None]
    assert warmup_factor(0, 0) is None


def test_linear_decay_holds_the_peak_then_falls_to_the_floor():
    peak, floor = 1e-3, 1e-5
    assert linear_decay_lr(peak, floor, 0.0, 0.5) == peak
    assert linear_decay_lr(peak, floor, 0.5, 0.5) == peak
    assert linear_decay_lr(peak, floor, 0.75, 0.5) == pytest.approx(floor + (peak - floor) / 2)
    assert linear_decay_lr(peak, floor, 1.0, 0.5) == floor
    assert linear_decay_lr(peak, floor, 1.5, 0.5) == floor
    assert linear_decay_lr(peak, 0.0, 0.25, 0.0) == pytest.approx(0.75 * peak)  # decay from the start


def test_budget_fraction_is_the_budget_that_runs_out_first():
    assert budget_fraction(step=50, wall_seconds=0, max_steps=100, total_epoch_steps=0, max_minutes=0) == 0.5
    assert budget_fraction(step=50, wall_seconds=45 * 60, max_steps=100, total_epoch_steps=0, max_minutes=60) == 0.75
    assert budget_fraction(step=30, wall_seconds=0, max_steps=0, total_epoch_steps=40, max_minutes=0) == 0.75
    assert budget_fraction(step=500, wall_seconds=0, max_steps=100, total_epoch_steps=0, max_minutes=0) == 1.0
    assert budget_fraction(step=5, wall_seconds=5, max_steps=0, total_epoch_steps=0, max_minutes=0) == 0.0


@pytest.mark.slow
def test_training_follows_the_linear_schedule(tmp_path):
    """After 10 of 10 updates with the decay from half-way, the last update used the rate for 9/10 of the budget."""
    torch.set_num_threads(1)
    run(
        make_config(
            *TINY, "trainer.max_steps=10", "trainer.valid_every=5", "optim.scheduler=linear", "optim.decay_start=0.5"
        ),
        str(tmp_path / "run"),
    )
    state = checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "run"), "last"))
    assert state["progress"]["step"] == 10
    [group] = state["optimizer"]["param_groups"]
    assert group["lr"] == pytest.approx(linear_decay_lr(1e-3, 1e-5, 0.9, 0.5))


@pytest.mark.slow
def test_a_time_budget_decays_the_rate_with_the_clock(tmp_path):
    """With only trainer.max_minutes set, the rate falls with wall-clock time: well below the peak when time is up."""
    torch.set_num_threads(1)
    overrides = ["trainer.max_steps=0", "trainer.max_epochs=0", "trainer.max_minutes=0.05", "trainer.valid_every=1000"]
    run(make_config(*TINY, *overrides, "optim.scheduler=linear", "optim.decay_start=0.0"), str(tmp_path / "run"))
    state = checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "run"), "last"))
    [group] = state["optimizer"]["param_groups"]
    assert state["progress"]["step"] > 1 and 1e-5 <= group["lr"] < 0.9e-3  # far below the peak on any machine


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.decay_start=1.0", "trainer.max_steps=10"], "optim.decay_start must be in"),
        (["trainer.max_steps=0", "trainer.max_epochs=0", "trainer.max_minutes=0"], "decays over the run's budget"),
    ],
)
def test_linear_schedule_rejects_bad_settings(tmp_path, overrides, message):
    with pytest.raises(S2SError, match=message):
        run(make_config(*TINY, "optim.scheduler=linear", *overrides), str(tmp_path / "run"))
