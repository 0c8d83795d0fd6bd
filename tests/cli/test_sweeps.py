"""Sweeps: the launcher and sweeper configs under conf/hydra/, real local sweeps, and the report.

The SLURM launcher is only composed (there is no cluster here); the joblib launcher and the
Optuna search run for real on the tiny task, a few steps per job.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from s2s.config import register_configs
from tests.conftest import CONF_DIR, ROOT, TINY, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None,
    reason="the optional Optuna sweeper is not installed (pip install hydra-optuna-sweeper)",
)
# Three updates and one validation per job: a sweep of four jobs takes seconds.
SHORT = [a for a in TINY if not a.startswith(("trainer.max_steps=", "trainer.valid_every="))] + [
    "trainer.max_steps=3",
    "trainer.valid_every=3",
]


def composed(overrides: list[str]):
    """conf/config.yaml composed with overrides, the `hydra` node included."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def run_report(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.sweep_report", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, MPLBACKEND="Agg"),
    )


def load_report_module():
    from scripts import sweep_report

    return sweep_report


def sweep_dirs(workdir) -> list[str]:
    """The sweep directories (multirun/DATE/TIME) under a working directory."""
    root = os.path.join(str(workdir), "multirun")
    return [os.path.join(root, day, time) for day in os.listdir(root) for time in os.listdir(os.path.join(root, day))]


# ----- composition ---------------------------------------------------------------------------
def test_joblib_launcher_composes_with_n_jobs():
    cfg = composed(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert cfg.hydra.launcher.n_jobs == 2


def test_local_parallel_is_joblib_with_two_jobs():
    launcher = composed(["hydra/launcher=local_parallel"]).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 2


def test_slurm_launcher_composes_with_its_settings():
    launcher = composed(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.timeout_min, launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (240, 1, 1, 1)
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.max_num_timeout) == (8, 32, 0)
    assert launcher.partition == "gpu"
    assert composed(["hydra/launcher=slurm"]).hydra.launcher.partition is None


@needs_optuna
def test_bleu_search_maximizes_bleu_over_a_valid_search_space():
    cfg = composed(["experiment=sweep_bleu"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert (sweeper.direction, sweeper.n_jobs, sweeper.storage) == ("maximize", 1, None)
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 1234
    assert cfg.trainer.early_stopping_metric == "bleu"  # what the runs return, so what Optuna maximizes
    assert {
        "optim.lr",
        "model.decoder.hidden_size",
        "model.encoder.dropout",
        "model.decoder.dropout",
        "data.subword.vocab_size",
    } <= set(sweeper.params)
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in sweeper.params.items()])
    assert all(override.is_sweep_override() for override in parsed)
    assert composed(["experiment=multi30k_de_en", "hydra/sweeper=bleu_search"]).trainer.early_stopping_metric == "bleu"


# ----- real sweeps ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory) -> tuple[str, str]:
    """A 2x2 grid run by the joblib launcher, two jobs at a time: (sweep dir, combined output)."""
    workdir = tmp_path_factory.mktemp("joblib")
    grid = ["model.decoder.cell=gru,lstm", "model.decoder.attention=none,bahdanau"]
    result = run_cli(
        "s2s.train", ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SHORT, *grid], cwd=str(workdir)
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-3000:]
    (sweep,) = sweep_dirs(workdir)
    return sweep, output


@pytest.mark.slow
def test_joblib_sweep_runs_every_combination_two_at_a_time(joblib_sweep):
    sweep, output = joblib_sweep
    assert "Joblib.Parallel(n_jobs=2" in output
    assert sorted(os.listdir(sweep)) == ["0", "1", "2", "3", "multirun.yaml"]
    combos = set()
    for job in "0123":
        assert os.path.isfile(os.path.join(sweep, job, "metrics.json")), job
        with open(os.path.join(sweep, job, ".hydra", "overrides.yaml")) as file:
            overrides = yaml.safe_load(file)
        combos.add(tuple(o for o in overrides if o.startswith(("model.decoder.cell=", "model.decoder.attention="))))
    assert len(combos) == 4


@pytest.mark.slow
def test_report_of_joblib_sweep(joblib_sweep, tmp_path):
    sweep, _ = joblib_sweep
    result = run_report([sweep, "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "leaderboard.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 4
    assert {
        "model.decoder.cell",
        "model.decoder.attention",
        "BLEU",
        "chrF",
        "ppl",
        "exact match",
        "parameters",
        "train s",
    } <= set(rows[0])
    assert "threads" not in rows[0] and "trainer.max_steps" not in rows[0]  # same in every job
    assert {(r["model.decoder.cell"], r["model.decoder.attention"]) for r in rows} == {
        (c, a) for c in ("gru", "lstm") for a in ("none", "bahdanau")
    }
    bleu = [float(r["BLEU"]) for r in rows]
    assert bleu == sorted(bleu, reverse=True)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert markdown.splitlines()[0].startswith("| job | model.decoder.cell | model.decoder.attention | BLEU |")
    assert len(markdown.splitlines()) == 2 + 4 and markdown in result.stdout
    assert (tmp_path / "leaderboard.png").read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
@needs_optuna
def test_optuna_bleu_search_runs_and_returns_bleu(tmp_path):
    # Fixed overrides (the tiny sizes, vocabulary 80) leave only lr and the dropouts to search.
    result = run_cli(
        "s2s.train", ["-m", "experiment=sweep_bleu", "hydra.sweeper.n_trials=2", *SHORT], cwd=str(tmp_path)
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    with open(os.path.join(sweep, "optimization_results.yaml")) as file:
        results = yaml.safe_load(file)
    assert set(results["best_params"]) == {"optim.lr", "model.encoder.dropout", "model.decoder.dropout"}
    returned = []
    for job in ("0", "1"):
        with open(os.path.join(sweep, job, "metrics.json")) as file:
            summary = json.load(file)
        assert summary["early_stopping_metric"] == "bleu" and summary["parameters"] > 0
        returned.append(summary["best"]["bleu"])
    assert results["best_value"] == max(returned)


# ----- the report on hand-made sweep directories -----------------------------------------------
def fake_job(
    sweep, name: str, overrides: list[str], best: dict | None, seconds: float = 1.0, parameters: int = 1000
) -> None:
    """A job directory as Hydra and s2s.train leave it; best=None: not finished (no metrics.json)."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if best is not None:
        summary = {
            "steps": 3,
            "train_seconds": seconds,
            "wall_seconds": seconds + 1,
            "parameters": parameters,
            "best": best,
            "last": best,
        }
        (job / "metrics.json").write_text(json.dumps(summary))


def scores(bleu: float, ppl: float) -> dict:
    return {"bleu": bleu, "chrf": 2 * bleu, "ppl": ppl, "loss": 1.0, "exact_match": 0.0}


@pytest.mark.slow
def test_report_ranks_by_the_metric_and_skips_unfinished_jobs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    fake_job(sweep, "0", ["optim.lr=0.001", "seed=1"], scores(10.0, 3.0))
    fake_job(sweep, "1", ["optim.lr=0.0003", "seed=1"], scores(30.0, 5.0))
    fake_job(sweep, "2", ["optim.lr=0.003", "seed=1"], None)
    report = load_report_module()
    text = report.report(str(sweep), str(tmp_path / "by_bleu"), "bleu")
    assert "note: skipped job 2" in capsys.readouterr().err
    lines = text.splitlines()
    assert lines[0] == "| job | optim.lr | BLEU | chrF | ppl | exact match | parameters | train s |"
    assert [line.split(" | ")[1] for line in lines[2:]] == ["0.0003", "0.001"]
    by_ppl = report.report(str(sweep), str(tmp_path / "by_ppl"), "ppl").splitlines()
    assert [line.split(" | ")[1] for line in by_ppl[2:]] == ["0.001", "0.0003"]  # lower is better


@pytest.mark.slow
def test_report_help():
    result = run_report(["--help"])
    assert result.returncode == 0 and "--metric" in result.stdout and "leaderboard.png" in result.stdout


@pytest.mark.slow
def test_report_refuses_a_missing_directory(tmp_path):
    result = run_report([str(tmp_path / "nowhere")])
    assert result.returncode == 2
    assert (
        result.stderr.startswith("error: ")
        and "is not a directory" in result.stderr
        and len(result.stderr.splitlines()) == 1
    )


@pytest.mark.slow
def test_report_refuses_a_sweep_without_finished_jobs(tmp_path):
    fake_job(tmp_path, "0", ["seed=1"], None)
    result = run_report([str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: no finished job under ")
    assert not (tmp_path / "leaderboard.md").exists()
