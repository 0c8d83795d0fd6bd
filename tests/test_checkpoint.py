"""Tests for atomic checkpoint saves, safe loads and finding runs (s2s.checkpoint)."""

from __future__ import annotations

import errno
import os
import pickle

import pytest
import torch

import s2s.checkpoint as checkpoint
from s2s.checkpoint import checkpoint_path, latest_run, load, resolve_checkpoint, save_atomic
from s2s.errors import S2SError
from tests.helpers import tiny_model


def _state(seed: int = 0) -> dict:
    model = tiny_model(seed=seed, hidden=8)
    optimizer = torch.optim.Adam(model.parameters())
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": 17 + seed,
        "rng": torch.get_rng_state(),
        "metric": 12.5,
        "position": {"epoch": 2, "batch": 5},
    }


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["step"] == b["step"] and a["metric"] == b["metric"] and a["position"] == b["position"]
    assert torch.equal(a["rng"], b["rng"])


def _leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".tmp-")]


def test_save_then_load_round_trips(tmp_path):
    state = _state()
    path = tmp_path / "checkpoints" / "last.pt"  # the directory is created
    save_atomic(state, str(path))
    loaded = load(str(path))
    _assert_same(state, loaded)
    # the model weights load back into a fresh model
    model = tiny_model(seed=99, hidden=8)
    model.load_state_dict(loaded["model"])
    assert all(torch.equal(p, state["model"][n]) for n, p in model.state_dict().items())
    assert _leftovers(path.parent) == []


def test_save_overwrites_previous_checkpoint(tmp_path):
    path = str(tmp_path / "last.pt")
    save_atomic(_state(0), path)
    save_atomic(_state(1), path)
    assert load(path)["step"] == 18
    assert _leftovers(tmp_path) == []


def test_truncated_checkpoint_raises_naming_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic(_state(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(S2SError, match="last.pt") as info:
        load(str(path))
    assert str(path) in str(info.value)


def test_garbage_and_missing_checkpoints_raise(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(S2SError, match="garbage.pt"):
        load(str(garbage))
    with pytest.raises(S2SError, match="does not exist"):
        load(str(tmp_path / "missing.pt"))


class Payload:
    """An arbitrary class: unpickling it would run code from the checkpoint."""

    def __init__(self):
        self.value = 1


def test_load_refuses_arbitrary_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, str(path))  # a plain (unsafe) save
    with pytest.raises(S2SError, match="evil.pt"):
        load(str(path))


def test_load_refuses_pickle_with_code(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "exploit.pt"
    with open(path, "wb") as file:
        pickle.dump(Exploit(), file, protocol=2)  # a legacy-format pickle that would create a file
    with pytest.raises(S2SError):
        load(str(path))
    assert not marker.exists()


def test_failed_save_to_a_directory_keeps_the_old_file(tmp_path):
    target = tmp_path / "best.pt"
    target.mkdir()  # os.replace cannot put a file over a directory
    (target / "keep").write_text("x")
    with pytest.raises(S2SError, match="best.pt"):
        save_atomic(_state(), str(target))
    assert (target / "keep").read_text() == "x"
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic(_state(0), str(path))
    before = path.read_bytes()

    def full_disk(state, file):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(S2SError, match="No space left"):
        save_atomic(_state(1), str(path))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load(str(path))["step"] == 17
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory_keeps_the_old_file(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic(_state(0), str(path))
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises((S2SError, PermissionError)):
            save_atomic(_state(1), str(path))
    finally:
        os.chmod(tmp_path, 0o700)
    assert load(str(path))["step"] == 17


def test_unwritable_directory_raises_s2s_error(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic(_state(0), str(path))

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", denied)  # what a read-only directory does
    try:
        with pytest.raises(S2SError, match="last.pt"):
            save_atomic(_state(1), str(path))
    finally:
        monkeypatch.undo()
        assert load(str(path))["step"] == 17


# ---------------------------------------------------------------- finding runs


def _make_run(root, name: str, mtime: float, best: bool = False) -> str:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.pt"
    save_atomic({"step": int(mtime)}, str(last))
    os.utime(last, (mtime, mtime))
    if best:
        save_atomic({"step": -1}, str(run / "checkpoints" / "best.pt"))
    return str(run)


def test_latest_run_picks_newest_checkpoint(tmp_path):
    outputs = tmp_path / "outputs"
    old = _make_run(outputs, "2024-01-01/10-00-00", 1_000_000)
    new = _make_run(outputs, "2024-01-02/09-00-00", 3_000_000)
    middle = _make_run(outputs, "2024-01-03/08-00-00", 2_000_000)  # newest name, not newest checkpoint
    assert latest_run(str(outputs)) == new
    os.utime(os.path.join(old, "checkpoints", "last.pt"), (4_000_000, 4_000_000))
    assert latest_run(str(outputs)) == old
    assert middle != latest_run(str(outputs))


def test_latest_run_without_runs_raises(tmp_path):
    (tmp_path / "outputs" / "some-dir").mkdir(parents=True)
    with pytest.raises(S2SError, match="no trained run"):
        latest_run(str(tmp_path / "outputs"))


def test_resolve_checkpoint(tmp_path):
    outputs = tmp_path / "outputs"
    with_best = _make_run(outputs, "a", 1_000_000, best=True)
    only_last = _make_run(outputs, "b", 2_000_000)
    assert resolve_checkpoint(with_best) == (with_best, checkpoint_path(with_best, "best"))
    assert resolve_checkpoint(with_best, "last") == (with_best, checkpoint_path(with_best, "last"))
    # best falls back to last when training has not saved a best one yet
    assert resolve_checkpoint(only_last) == (only_last, checkpoint_path(only_last, "last"))
    # a checkpoint file names its run directory
    run_dir, path = resolve_checkpoint(checkpoint_path(with_best, "best"))
    assert os.path.samefile(run_dir, with_best) and path == checkpoint_path(with_best, "best")
    # no run given: the newest under the search root
    assert resolve_checkpoint(None, search_root=str(outputs)) == (only_last, checkpoint_path(only_last, "last"))


def test_resolve_checkpoint_errors(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(S2SError, match="nope") as info:
        resolve_checkpoint(missing)
    assert "neither a run directory, a checkpoint file nor a model file" in str(info.value)
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    with pytest.raises(S2SError, match="no checkpoint in"):
        resolve_checkpoint(str(empty_run))
    only_best = tmp_path / "only-best"
    _make_run(tmp_path, "only-best-run", 1_000_000)
    os.rename(tmp_path / "only-best-run", only_best)
    with pytest.raises(S2SError, match="no checkpoint in"):
        resolve_checkpoint(str(only_best), "averaged")
    with pytest.raises(S2SError, match="checkpoint=other must be best, last, averaged or step-N"):
        resolve_checkpoint(str(only_best), "other")
    with pytest.raises(S2SError, match="no trained run"):
        resolve_checkpoint(None, search_root=str(tmp_path / "no-outputs"))
