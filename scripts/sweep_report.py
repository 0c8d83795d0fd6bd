"""Leaderboard of a Hydra sweep: one row per finished job, best first.

    python -m scripts.sweep_report multirun/2026-11-24/15-40-03 [--out DIR] [--metric bleu]

Reads every job directory under the sweep directory (a directory holding
`.hydra/overrides.yaml`; the job is finished when its `metrics.json` exists) and
writes, to --out (default: the sweep directory):

  leaderboard.md   the table in Markdown (also printed)
  leaderboard.csv  the same table as CSV, full precision
  leaderboard.png  the metric against training time and against parameter count

The columns are the overrides whose values differ between jobs, then the scores of
the validation kept as best.pt (chosen by each run's trainer.early_stopping_metric),
the parameter count and the training time. Unfinished jobs are skipped with a note.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass

import yaml

from s2s.errors import S2SError, user_errors_exit
from s2s.metrics import HIGHER_IS_BETTER

# (column title, key in metrics.json "best") for the scores shown in every row.
SCORES = [("BLEU", "bleu"), ("chrF", "chrf"), ("ppl", "ppl"), ("exact match", "exact_match")]
TITLES = {key: title for title, key in SCORES}


@dataclass
class Job:
    name: str  # the job directory, relative to the sweep directory (usually its number)
    overrides: dict[str, str]  # key=value overrides of this job, in command-line order
    metrics: dict  # the run's metrics.json


def find_jobs(sweep_dir: str) -> tuple[list[Job], list[str]]:
    """Finished jobs under sweep_dir, and the names of job directories without a readable metrics.json."""
    if not os.path.isdir(sweep_dir):
        raise S2SError(f"{sweep_dir} is not a directory; give a sweep directory such as multirun/DATE/TIME")
    jobs, unfinished = [], []
    for directory, subdirs, _ in os.walk(sweep_dir):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]  # not into .hydra, .submitit
        overrides_file = os.path.join(directory, ".hydra", "overrides.yaml")
        if not os.path.isfile(overrides_file):
            continue
        name = os.path.relpath(directory, sweep_dir)
        metrics = read_metrics(os.path.join(directory, "metrics.json"))
        if metrics is None:
            unfinished.append(name)
        else:
            jobs.append(Job(name, read_overrides(overrides_file), metrics))
    jobs.sort(key=lambda job: (len(job.name), job.name))  # 2 before 10
    unfinished.sort(key=lambda name: (len(name), name))
    return jobs, unfinished


def read_metrics(path: str) -> dict | None:
    """A job's metrics.json, or None when it is missing or cut short (the job has not finished)."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_overrides(path: str) -> dict[str, str]:
    """The `key=value` items of a job's .hydra/overrides.yaml as a dict (a leading + or ~ dropped)."""
    with open(path, encoding="utf-8") as file:
        items = yaml.safe_load(file) or []
    pairs = (str(item).partition("=") for item in items)
    return {key.lstrip("+~"): value for key, _, value in pairs}


def differing_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job, in first-seen order."""
    keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
    return [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]


def rank(jobs: list[Job], metric: str) -> list[Job]:
    """Jobs best first by metric (of the best validation); jobs without a value go last."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    scored = [job for job in jobs if _best(job, metric) is not None]
    unscored = [job for job in jobs if _best(job, metric) is None]
    return sorted(scored, key=lambda job: sign * float(_best(job, metric))) + unscored


def _best(job: Job, metric: str) -> object:
    """The metric at the run's best validation, or None (no validation improved, e.g. all NaN)."""
    return (job.metrics.get("best") or {}).get(metric)


def table(jobs: list[Job], keys: list[str], metric: str) -> tuple[list[str], list[list[object]]]:
    """Header and rows (raw values, None where missing) of the leaderboard."""
    scores = SCORES + ([(metric, metric)] if metric not in TITLES else [])  # ranked by loss: show it
    header = ["job", *keys, *(title for title, _ in scores), "parameters", "train s"]
    rows = []
    for job in jobs:
        best = job.metrics.get("best") or {}
        rows.append(
            [
                job.name,
                *(job.overrides.get(k) for k in keys),
                *(best.get(key) for _, key in scores),
                job.metrics.get("parameters"),
                job.metrics.get("train_seconds"),
            ]
        )
    return header, rows


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value).replace("|", "\\|")  # a bare | would end the Markdown cell
    try:  # Optuna writes floats with 17 digits; four are enough to read
        number = float(text)
        return f"{number:.4g}" if any(c in text for c in ".eE") else text
    except ValueError:
        return text


def markdown(header: list[str], rows: list[list[object]]) -> str:
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def plot(path: str, jobs: list[Job], metric: str) -> None:
    """Two panels: metric against training seconds (marker area ~ parameters), and against parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [job for job in jobs if _best(job, metric) is not None]
    values = [float(_best(job, metric)) for job in shown]
    seconds = [float(job.metrics.get("train_seconds", 0.0)) for job in shown]
    parameters = [int(job.metrics.get("parameters", 0)) for job in shown]
    low, high = min(parameters, default=0), max(parameters, default=0)
    sizes = [40 + 260 * (p - low) / max(high - low, 1) for p in parameters]  # smallest to largest model
    figure, (by_time, by_size) = plt.subplots(1, 2, figsize=(11, 4.5))
    by_time.scatter(seconds, values, s=sizes, alpha=0.6)
    by_size.scatter(parameters, values, alpha=0.6)
    for job, x_time, x_size, y in zip(shown, seconds, parameters, values):
        by_time.annotate(job.name, (x_time, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        by_size.annotate(job.name, (x_size, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    figure.suptitle("point labels: the job column of leaderboard.md", fontsize=9)
    title = TITLES.get(metric, metric)
    by_time.set(
        xlabel="training time (s)",
        ylabel=f"best validation {title}",
        title="score against training time (marker size: parameters)",
    )
    by_size.set(xlabel="parameters", ylabel=f"best validation {title}", title="score against model size")
    for axes in (by_time, by_size):
        axes.grid(alpha=0.3)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(sweep_dir: str, out_dir: str, metric: str) -> str:
    """Write leaderboard.md/.csv/.png to out_dir; returns the Markdown table."""
    jobs, unfinished = find_jobs(sweep_dir)
    for name in unfinished:
        print(
            f"note: skipped job {name}: no complete metrics.json (still running, failed or interrupted)",
            file=sys.stderr,
        )
    if not jobs:
        raise S2SError(
            f"no finished job under {sweep_dir}: no directory there has both .hydra/overrides.yaml and metrics.json"
        )
    ranked = rank(jobs, metric)
    header, rows = table(ranked, differing_keys(ranked), metric)
    text = markdown(header, rows)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "leaderboard.md"), "w", encoding="utf-8") as file:
        file.write(text)
    write_csv(os.path.join(out_dir, "leaderboard.csv"), header, rows)
    plot(os.path.join(out_dir, "leaderboard.png"), ranked, metric)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.sweep_report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "sweep_dir", metavar="MULTIRUN_DIR", help="a sweep directory, e.g. multirun/2026-11-24/15-40-03"
    )
    parser.add_argument("--out", metavar="DIR", help="where to write the leaderboard files (default: MULTIRUN_DIR)")
    parser.add_argument(
        "--metric",
        default="bleu",
        choices=sorted(HIGHER_IS_BETTER),
        help="rank by this validation metric (default: bleu)",
    )
    args = parser.parse_args(argv)
    text = report(args.sweep_dir, args.out or args.sweep_dir, args.metric)
    print(text, end="")
    print(f"wrote leaderboard.md, leaderboard.csv, leaderboard.png to {args.out or args.sweep_dir}", file=sys.stderr)


if __name__ == "__main__":
    with user_errors_exit():  # not a sweep directory, or no finished job: one error line, exit status 2
        main()
