"""Training in-process (s2s.training.trainer via s2s.commands.train.run): resume equals an uninterrupted run,
learning, weight averaging, R-Drop, validation and logging, settings refused before training."""

from __future__ import annotations

import math
import os

import pytest
import torch

from s2s import checkpoint
from s2s.commands.train import run
from tests.conftest import TINY, make_config


def _final_parameters(run_dir: str) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.checkpoint_path(run_dir, "last"))["model"]


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    common = [
        *TINY,
        "trainer.valid_every=4",
        "model.embedding_dropout=0.2",
        "model.decoder.dropout=0.2",
        "optim.warmup_steps=3",
    ]
    straight = str(tmp_path / "straight")
    run(make_config(*common, "trainer.max_steps=12"), straight)

    interrupted = str(tmp_path / "interrupted")
    run(make_config(*common, "trainer.max_steps=8"), interrupted)
    assert checkpoint.load(checkpoint.checkpoint_path(interrupted, "last"))["progress"]["step"] == 8
    run(make_config(*common, "trainer.max_steps=12", "trainer.resume=auto"), interrupted)

    expected, resumed = _final_parameters(straight), _final_parameters(interrupted)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_resume_refuses_a_different_model(tmp_path):
    from s2s.errors import S2SError

    run_dir = str(tmp_path / "run")
    run(make_config(*TINY, "trainer.max_steps=2"), run_dir)
    with pytest.raises(S2SError, match="model config differs"):
        run(make_config(*TINY, "trainer.max_steps=4", "model.decoder.hidden_size=24", "trainer.resume=auto"), run_dir)


@pytest.mark.slow
def test_loss_falls_and_best_checkpoint_holds_the_best_metric(tmp_path):
    barely = run(make_config(*TINY, "trainer.max_steps=1", "trainer.valid_every=1"), str(tmp_path / "one"))
    trained = run(
        make_config(*TINY, "trainer.max_steps=40", "trainer.valid_every=10", "trainer.early_stopping_metric=loss"),
        str(tmp_path / "forty"),
    )
    assert trained["steps"] == 40
    assert trained["last"]["loss"] < barely["last"]["loss"] - 0.5
    best = checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "forty"), "best"))
    assert best["metrics"]["loss"] == trained["best"]["loss"] <= trained["last"]["loss"]
    assert best["progress"]["step"] == trained["best_step"]


@pytest.mark.slow
def test_max_minutes_stops_a_run_on_time(tmp_path):
    summary = run(
        make_config(*TINY, "trainer.max_steps=0", "trainer.max_epochs=0", "trainer.max_minutes=0.05"),
        str(tmp_path / "run"),
    )
    assert 3.0 <= summary["wall_seconds"] < 20.0
    assert summary["steps"] > 0


@pytest.mark.slow
def test_resume_with_weight_averaging_continues_exactly(tmp_path):
    """With optim.ema_decay the averaged and the trained weights both survive an interruption."""
    torch.set_num_threads(1)
    common = [*TINY, "trainer.valid_every=4", "model.decoder.dropout=0.2", "optim.ema_decay=0.9"]
    straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
    run(make_config(*common, "trainer.max_steps=12"), straight)
    run(make_config(*common, "trainer.max_steps=8"), interrupted)
    run(make_config(*common, "trainer.max_steps=12", "trainer.resume=auto"), interrupted)
    expected = checkpoint.load(checkpoint.checkpoint_path(straight, "last"))
    resumed = checkpoint.load(checkpoint.checkpoint_path(interrupted, "last"))
    assert resumed["ema_updates"] == expected["ema_updates"] == 12
    for key in ("model", "trained_model"):
        for name in expected[key]:
            torch.testing.assert_close(resumed[key][name], expected[key][name], rtol=0, atol=0, msg=f"{key}.{name}")


@pytest.mark.slow
def test_weight_averaging_saves_the_moving_average(tmp_path):
    """The saved "model" is d * previous average + (1 - d) * trained weights, d = min(decay, (1 + n) / (10 + n))."""
    torch.set_num_threads(1)
    common = [*TINY, "trainer.valid_every=100", "optim.ema_decay=0.5"]
    run(make_config(*common, "trainer.max_steps=1"), str(tmp_path / "one"))
    run(make_config(*common, "trainer.max_steps=2"), str(tmp_path / "two"))
    one = checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "one"), "last"))
    two = checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "two"), "last"))
    name = "decoder.output.weight"
    torch.testing.assert_close(one["model"][name], one["trained_model"][name])  # the first update copies
    d = min(0.5, 2 / 11)  # after one update, the warm-up keeps the decay low
    expected = d * one["trained_model"][name] + (1 - d) * two["trained_model"][name]
    torch.testing.assert_close(two["model"][name], expected)
    assert not torch.equal(two["model"][name], two["trained_model"][name])


def test_weight_averaging_rejects_a_bad_decay(tmp_path):
    from s2s.errors import S2SError

    with pytest.raises(S2SError, match="ema_decay"):
        run(make_config(*TINY, "optim.ema_decay=1.0"), str(tmp_path / "run"))


@pytest.mark.parametrize("smoothing", ["-0.1", "1.0"])
def test_label_smoothing_outside_0_1_is_rejected_before_training(tmp_path, smoothing):
    from s2s.errors import S2SError

    with pytest.raises(S2SError, match="optim.label_smoothing must be in"):
        run(make_config(*TINY, f"optim.label_smoothing={smoothing}"), str(tmp_path / "run"))


@pytest.mark.parametrize(
    "setting, message",
    [
        ("trainer.valid_every=-1", "trainer.valid_every must be 0"),
        ("trainer.log_every=0", "trainer.log_every must be at least 1"),
    ],
)
def test_bad_validation_and_log_intervals_are_rejected_before_training(tmp_path, setting, message):
    from s2s.errors import S2SError

    with pytest.raises(S2SError, match=message):
        run(make_config(*TINY, setting), str(tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("valid_every", ["1000", "0"])  # 0: no validation by update count
@pytest.mark.parametrize("each_epoch", [True, False])
def test_validation_at_epoch_ends_can_be_turned_off(tmp_path, each_epoch, valid_every):
    import json

    torch.set_num_threads(1)
    run_dir = str(tmp_path / "run")
    run(
        make_config(
            *TINY,
            "trainer.max_steps=0",
            "trainer.max_epochs=3",
            f"trainer.valid_every={valid_every}",
            f"trainer.valid_each_epoch={each_epoch}",
        ),
        run_dir,
    )
    with open(os.path.join(run_dir, "history.jsonl")) as lines:
        validated = [record["step"] for record in map(json.loads, lines) if record["kind"] == "valid"]
    last = checkpoint.load(checkpoint.checkpoint_path(run_dir, "last"))["progress"]["step"]
    if each_epoch:
        assert len(validated) == 3 and validated[-1] == last  # one per epoch, the last at the end
    else:
        assert validated == [last]  # only the final validation


@pytest.mark.slow
@pytest.mark.parametrize("clip_norm", [1e-4, 0.0])  # 1e-4: every update clipped; 0: clipping off
def test_log_reports_gradient_norm_before_clipping(tmp_path, caplog, clip_norm):
    import json
    import logging

    caplog.set_level(logging.INFO, logger="s2s.train")
    torch.set_num_threads(1)
    run_dir = str(tmp_path / "run")
    run(make_config(*TINY, "trainer.max_steps=6", "trainer.log_every=3", f"optim.clip_norm={clip_norm}"), run_dir)
    with open(os.path.join(run_dir, "history.jsonl")) as lines:
        logged = [record for record in map(json.loads, lines) if record["kind"] == "train"]
    assert [record["step"] for record in logged] == [3, 6]
    for record in logged:
        assert math.isfinite(record["grad_norm"]) and record["grad_norm"] > 1e-3  # the norm before clipping, not after
        assert record["clipped_percent"] == (100.0 if clip_norm > 0 else 0.0)
    step_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(step_lines) == 2 and all("gnorm" in line and "clipped" in line for line in step_lines)


@pytest.mark.slow
def test_rdrop_without_dropout_trains_like_plain_training(tmp_path):
    torch.set_num_threads(1)
    no_dropout = [
        *TINY,
        "model.embedding_dropout=0",
        "model.encoder.dropout=0",
        "model.decoder.dropout=0",
        "trainer.max_steps=4",
    ]
    run(make_config(*no_dropout), str(tmp_path / "plain"))
    run(
        make_config(*no_dropout, "optim.rdrop_alpha=5"), str(tmp_path / "rdrop")
    )  # both copies see the same model: KL 0
    plain, rdrop = _final_parameters(str(tmp_path / "plain")), _final_parameters(str(tmp_path / "rdrop"))
    for name in plain:
        torch.testing.assert_close(rdrop[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_rdrop_with_dropout_changes_training_and_logs_cross_entropy(tmp_path):
    import json

    torch.set_num_threads(1)
    dropout = [
        *TINY,
        "model.embedding_dropout=0.3",
        "model.decoder.dropout=0.3",
        "trainer.max_steps=6",
        "trainer.log_every=3",
    ]
    run(make_config(*dropout), str(tmp_path / "plain"))
    run(make_config(*dropout, "optim.rdrop_alpha=5"), str(tmp_path / "rdrop"))
    plain, rdrop = _final_parameters(str(tmp_path / "plain")), _final_parameters(str(tmp_path / "rdrop"))
    assert any(not torch.allclose(plain[name], rdrop[name], atol=1e-4) for name in plain)
    logged = {}
    for name in ("plain", "rdrop"):
        with open(tmp_path / name / "history.jsonl") as lines:
            logged[name] = [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]
    # the logged loss is the cross-entropy, on the scale of a plain run's, not cross-entropy + KL
    assert all(abs(a - b) < 0.5 for a, b in zip(logged["plain"], logged["rdrop"]))


def test_negative_rdrop_alpha_is_rejected_before_training(tmp_path):
    from s2s.errors import S2SError

    with pytest.raises(S2SError, match="optim.rdrop_alpha must be >= 0"):
        run(make_config(*TINY, "optim.rdrop_alpha=-1"), str(tmp_path / "run"))
