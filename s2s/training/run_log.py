"""What a training run records beside its checkpoints: a JSON-lines history of training and
validation metrics, TensorBoard scalars, and a learning-curve PNG redrawn at each validation.

The history file is appended to, so a resumed run continues the same curve.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

HISTORY_FILE, CURVE_FILE, TENSORBOARD_DIR = "history.jsonl", "learning_curve.png", "tensorboard"


class RunLog:
    def __init__(self, run_dir: str, tensorboard: bool = True):
        self.run_dir = run_dir
        self.history_path = os.path.join(run_dir, HISTORY_FILE)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(os.path.join(run_dir, TENSORBOARD_DIR))
            except ImportError:  # tensorboard is a dependency, but a stripped install may lack it
                log.warning("tensorboard is not installed: no TensorBoard scalars will be written")

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append {kind, step, values...} to the history and to TensorBoard (numbers only)."""
        with open(self.history_path, "a", encoding="utf-8") as file:
            file.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{kind}/{name}", value, step)
            self.writer.flush()

    def history(self) -> list[dict[str, Any]]:
        if not os.path.isfile(self.history_path):
            return []
        with open(self.history_path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]

    def plot(self) -> str:
        """Draw training loss and validation loss / BLEU against steps into learning_curve.png."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.history()
        train = [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
        valid = [r for r in rows if r["kind"] == "valid"]
        figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(10, 4))
        if train:
            loss_axis.plot(*zip(*train), label="train (label-smoothed)")
        if valid:
            loss_axis.plot([r["step"] for r in valid], [r["loss"] for r in valid], marker="o", label="validation")
            for metric in ("bleu", "chrf", "exact_match"):
                score_axis.plot([r["step"] for r in valid], [r[metric] for r in valid], marker="o", label=metric)
        loss_axis.set(xlabel="step", ylabel="cross-entropy per token", title="loss")
        score_axis.set(xlabel="step", ylabel="score", title="validation")
        for axis in (loss_axis, score_axis):
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        path = os.path.join(self.run_dir, CURVE_FILE)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
