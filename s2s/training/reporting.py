"""What a training run shows and writes as it goes: the progress bar, log lines, history and metrics.json.

Only rank 0 writes; the other ranks' Reporter keeps its running averages but prints nothing.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from tqdm import tqdm

from s2s.config import Config, TrainerConfig
from s2s.metrics import perplexity
from s2s.training.progress import Progress, UpdateStats
from s2s.training.run_log import RunLog

log = logging.getLogger("s2s.train")

RECENT_UPDATES = 50  # the log's and the bar's averages are over this many updates
METRICS_FILE = "metrics.json"


class Reporter:
    def __init__(self, cfg: TrainerConfig, run_dir: str, is_main: bool):
        self.cfg, self.run_dir, self.is_main = cfg, run_dir, is_main
        self.run_log = RunLog(run_dir, cfg.tensorboard) if is_main else None
        self.recent: list[UpdateStats] = []
        self.bar: tqdm | None = None

    def open_bar(self, total: int, done: int) -> None:
        show = self.cfg.progress_bar and self.is_main
        disable = None if show else True  # None: only on a terminal
        self.bar = tqdm(
            total=total, initial=min(done, total), desc="train", unit="step", dynamic_ncols=True, disable=disable
        )

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def close(self) -> None:
        if self.run_log is not None:
            self.run_log.close()

    def update(self, stats: UpdateStats, progress: Progress, lr: float) -> None:
        """One update done: move the bar; every trainer.log_every updates, a log line and a history row."""
        self.recent = self.recent[-(RECENT_UPDATES - 1) :] + [stats]
        recent = self.recent
        mean_loss = sum(u.loss for u in recent) / len(recent)
        speed = sum(u.tokens for u in recent) / max(sum(u.seconds for u in recent), 1e-9)
        grad_norm = sum(u.grad_norm for u in recent) / len(recent)  # before clipping
        clipped = 100.0 * sum(u.clipped for u in recent) / len(recent)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{mean_loss:.3f}",
                tok_s=f"{speed:.0f}",
                gnorm=f"{grad_norm:.2f}",
                lr=f"{lr:.2e}",
                epoch=progress.epoch + 1,
                refresh=False,
            )
        if progress.step % self.cfg.log_every != 0 or not self.is_main:
            return
        log.info(
            "step %d  epoch %d  loss %.4f  ppl %.2f  lr %.2e  gnorm %.2f (%.0f%% clipped)  %.0f tok/s",
            progress.step, progress.epoch + 1, mean_loss, perplexity(mean_loss), lr, grad_norm, clipped, speed,
        )  # fmt: skip
        values = {"loss": mean_loss, "ppl": perplexity(mean_loss), "lr": lr, "grad_norm": grad_norm}
        self.run_log.record("train", progress.step, {**values, "clipped_percent": clipped, "tokens_per_second": speed})

    def validation(self, metrics: dict[str, Any], seconds: float) -> None:
        """A validation's log line, its history row, and the learning curve redrawn (rank 0 only)."""
        log.info(
            "validation at step %d: loss %.4f  ppl %.2f  BLEU %.2f  chrF %.2f  exact %.2f%%  (%.1fs)",
            metrics["step"], metrics["loss"], metrics["ppl"], metrics["bleu"], metrics["chrf"],
            metrics["exact_match"], seconds,
        )  # fmt: skip
        self.run_log.record("valid", metrics["step"], {k: v for k, v in metrics.items() if k != "step"})
        self.run_log.plot()

    def summary(self, summary: dict[str, Any], progress: Progress, checkpoint_dir: str) -> None:
        """Write metrics.json and the closing log line (rank 0 only)."""
        with open(os.path.join(self.run_dir, METRICS_FILE), "w", encoding="utf-8") as file:
            json.dump(summary, file, indent=2)
        log.info(
            "done: best %s %.2f at step %d; %d steps in %.0f s; checkpoints in %s",
            self.cfg.early_stopping_metric, progress.best_score or 0.0, progress.best_step, progress.step,
            progress.train_seconds, checkpoint_dir,
        )  # fmt: skip


def run_summary(
    cfg: Config,
    run_dir: str,
    progress: Progress,
    parameters: int,
    best_metrics: dict[str, Any] | None,
    last_metrics: dict[str, Any],
    ranks: int,
    rank_checksums: list[str],
    data_counts: dict[str, Any],
) -> dict[str, Any]:
    """What metrics.json holds: the best step and its metrics, the last metrics, times and sizes."""
    return {
        "run_dir": run_dir,
        "steps": progress.step,
        "epochs": progress.epoch + (1 if progress.position else 0),
        "train_seconds": round(progress.train_seconds, 1),
        "wall_seconds": round(progress.wall_seconds, 1),
        "parameters": parameters,
        "early_stopping_metric": cfg.trainer.early_stopping_metric,
        "best_step": progress.best_step,
        "best": best_metrics or {},
        "last": last_metrics,
        "skipped_steps": progress.skipped_steps,
        "ranks": ranks,
        "effective_batch_tokens": cfg.data.max_tokens * cfg.optim.accumulate * ranks,
        "rank_parameter_checksums": rank_checksums,
        "data": data_counts,
    }
