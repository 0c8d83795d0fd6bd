"""`python -m s2s.average [run=PATH] [last=5]`: one model from the mean of a run's last checkpoints.

Averages the weights of the last N checkpoints that training kept (`trainer.keep_checkpoints=N`
saves each validation's weights as checkpoints/step-N.pt) and writes them to
checkpoints/averaged.pt, which translate and evaluate read with `--checkpoint averaged`.
The mean of points along the end of a run often translates better than any one of them when
training keeps no moving average; with one (`optim.ema_decay`) it added nothing on Multi30k
(docs/experiments/multi30k.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from s2s import checkpoint
from s2s.arguments import parse_overrides
from s2s.errors import S2SError, user_errors_exit

USAGE = (
    __doc__
    + """
Options (key=value or --flag):
  run=PATH         training run directory (default: the latest run under outputs/)
  last=5           average the last N kept checkpoints (fewer if the run kept fewer)
  weights=trained  trained: the optimizer's weights of each checkpoint;
                   model: the weights it validated and translates with (with optim.ema_decay > 0,
                   their moving average; without, the same as trained)
  output=PATH      where to write (default: RUN/checkpoints/averaged.pt)
"""
)


@dataclass
class AverageOptions:
    run: str | None = None  # run directory (default: the latest under outputs/)
    last: int = 5  # how many of the last kept checkpoints to average
    weights: str = "trained"  # trained | model
    output: str | None = None  # default: RUN/checkpoints/averaged.pt


def weights_of(state: dict[str, Any], which: str) -> dict[str, torch.Tensor]:
    """A checkpoint's trained weights ("trained_model" when it also holds a moving average) or its "model"."""
    return state["trained_model"] if which == "trained" and "trained_model" in state else state["model"]


def last_kept(run_dir: str, count: int) -> list[str]:
    """The run's last `count` kept step-N.pt checkpoints (fewer if it kept fewer), oldest first."""
    kept = checkpoint.step_checkpoints(run_dir)
    if not kept:
        raise S2SError(f"{run_dir} kept no step-N.pt checkpoints to average; train with trainer.keep_checkpoints=N")
    return kept[-count:]


def average_weights(paths: list[str], which: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The mean of the checkpoints' weights (float tensors; others from the last one) and the last checkpoint."""
    total: dict[str, torch.Tensor] = {}
    layout: dict[str, tuple[torch.Size, torch.dtype]] = {}  # the first checkpoint's shapes and dtypes
    state: dict[str, Any] = {}
    for path in paths:
        state = checkpoint.load(path)
        if "model" not in state or "config" not in state:
            raise S2SError(f"{path} is not an s2s checkpoint (no model or config inside)")
        weights = weights_of(state, which)
        shapes = {name: (tensor.shape, tensor.dtype) for name, tensor in weights.items()}
        if not layout:
            layout = shapes
        elif shapes != layout:
            raise S2SError(f"{path} holds a different model from {paths[0]}; average checkpoints of one run only")
        for name, tensor in weights.items():
            if not tensor.is_floating_point():
                total[name] = tensor
            elif name in total:
                total[name] += tensor.float()
            else:
                total[name] = tensor.float().clone()  # never the loaded tensor itself: it is added to in place
    averaged = {name: (t / len(paths)).to(layout[name][1]) if t.is_floating_point() else t for name, t in total.items()}
    return averaged, state


def average(options: AverageOptions) -> str:
    if options.last < 1:
        raise S2SError(f"last must be at least 1, got {options.last}")
    if options.weights not in ("trained", "model"):
        raise S2SError(f"weights={options.weights} must be trained or model")
    run_dir = options.run if options.run is not None else checkpoint.latest_run()
    if not os.path.isdir(run_dir):
        raise S2SError(f"run={run_dir} is not a run directory")
    paths = last_kept(run_dir, options.last)
    averaged, last = average_weights(paths, options.weights)
    state = {
        key: value
        for key, value in last.items()
        if key not in ("trained_model", "ema_updates", "metrics", "best_metrics")
    }
    state["model"] = averaged
    state["averaged_from"] = [os.path.basename(path) for path in paths]
    state["averaged_weights"] = options.weights
    output = options.output or checkpoint.checkpoint_path(run_dir, "averaged")
    checkpoint.save_atomic(state, output)
    names = ", ".join(os.path.basename(path)[: -len(".pt")] for path in paths)
    print(f"averaged the {options.weights} weights of {len(paths)} checkpoints ({names}) into {output}")
    return output


def main(argv: list[str] | None = None) -> None:
    with user_errors_exit():
        options, search = parse_overrides(sys.argv[1:] if argv is None else argv, AverageOptions, USAGE)
        if search:
            raise S2SError("average takes no search options; give them to translate or evaluate")
        average(options)


if __name__ == "__main__":
    main()
