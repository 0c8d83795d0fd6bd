"""The Python API, exported by `import s2s`: load a trained model, train, evaluate.

    import s2s
    run_dir = s2s.train(["trainer.max_steps=300"])
    translator = s2s.load(run_dir)
    translator.translate(["Dienstag, 9. November 1989"], beam_size=5)   # ['1989-11-09']
    s2s.evaluate(run_dir, beam_size=5)["bleu"]

The command modules are imported inside the functions: `python -m s2s.evaluate` must not
find its own module already imported by `import s2s`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from s2s.decoding.loading import load_translator
from s2s.decoding.options import SEARCH_OPTIONS, check_decoding_options
from s2s.decoding.translator import Translator
from s2s.errors import S2SError

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # as the command line's train.log


def load(
    path: str | list[str],
    checkpoint: str = "best",
    device: str = "auto",
    *,
    precision: str = "fp32",
    reverse: bool = False,
    combine: str = "probs",
) -> Translator:
    """A Translator for a training run directory, a checkpoint file or a model file, or for an
    ensemble of several (a list: one search over their averaged predictions).

    checkpoint: best | last | averaged | step-N (ignored when `path` is a checkpoint file).
    device: auto (CUDA when available) | cpu | cuda | cuda:N.
    precision: fp32 | bf16 | auto | int8 (a CPU only), the weights' precision for decoding.
    reverse: translate target to source language with a model trained with data.both_directions.
    combine: how an ensemble averages its members' next-token distributions: probs (the mean
    of the probabilities) or log_probs (the renormalized mean of the log-probabilities).
    """
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths or any(not isinstance(p, (str, os.PathLike)) for p in paths):
        raise S2SError(
            "s2s.load takes the path of a run directory, checkpoint or model file, or a list of them, "
            f"got {type(path).__name__}"
        )
    models = [os.fspath(p) for p in paths]
    translator, _, _ = load_translator(
        models if len(models) > 1 else models[0], checkpoint, device, [f"precision={precision}"], reverse, combine
    )
    return translator


def train(overrides: list[str] | None = None, config_dir: str | None = None) -> str:
    """Train as `python -m s2s.train OVERRIDES...` does, in this process; returns the run directory.

    overrides: Hydra overrides, e.g. ["data=files", "data.dir=corpus", "trainer.max_steps=300"]
    (`hydra.run.dir=PATH` chooses the run directory; default outputs/DATE/TIME).
    config_dir: a directory of your own config groups (e.g. config_dir/experiment/mine.yaml),
    searched besides the packaged ones, as `--config-dir` on the command line.
    The log goes to the run's train.log (and to stderr when logging is not configured).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from s2s.arguments import CONF_DIR, check_overrides
    from s2s.commands.train import run
    from s2s.config import Config, register_configs

    if isinstance(overrides, str) or any(not isinstance(o, str) for o in overrides or []):
        raise S2SError("s2s.train takes a list of override strings, e.g. ['trainer.max_steps=300']")
    overrides = list(overrides or [])
    check_overrides(overrides + (["--config-dir", config_dir] if config_dir is not None else []))
    extra = [f"hydra.searchpath=[file://{os.path.abspath(config_dir)}]"] if config_dir is not None else []
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        composed = compose("config", overrides=overrides + extra, return_hydra_config=True)
    run_dir = str(composed.hydra.run.dir)
    with open_dict(composed):
        del composed["hydra"]
    cfg: Config = OmegaConf.to_object(composed)  # type: ignore[assignment]
    os.makedirs(run_dir, exist_ok=True)
    with _logging_to(os.path.join(run_dir, "train.log")):
        run(cfg, run_dir)
    return run_dir


def evaluate(
    path: str | list[str] | None = None,
    *,
    split: str | None = None,
    checkpoint: str = "best",
    device: str = "auto",
    data_dir: str | None = None,
    reverse: bool = False,
    precision: str = "fp32",
    combine: str = "probs",
    hypotheses: str | None = None,
    references: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Metrics as `python -m s2s.evaluate` computes them, without printing.

    Translates `split` (default: the run's test split) of the corpus of the run at `path` (a list:
    an ensemble, decoded with the first member's settings, `combine` as for `load`)
    with the decoding options given as keywords (beam_size=5, length_penalty=1.4, ...), or
    scores the files `hypotheses` against `references`. Returns bleu, bleu_lc, chrf,
    exact_match (and bleu_lc_moses for a language with Moses rules), each with its
    sacreBLEU signature (`bleu_signature`, ...).
    """
    from s2s.commands.evaluate import EvaluateOptions, compute_metrics

    check_decoding_options(options)
    per_call_only = sorted(set(options) - set(SEARCH_OPTIONS))
    if per_call_only:
        raise S2SError(f"s2s.evaluate takes search options only, not {', '.join(per_call_only)}")
    search = [f"{key}={value}" for key, value in options.items()] + [f"precision={precision}"]
    opts = EvaluateOptions(
        model=[os.fspath(p) for p in (path if isinstance(path, (list, tuple)) else [path])] if path is not None else [],
        combine=combine,
        checkpoint=checkpoint,
        split=split,
        data_dir=data_dir,
        hyp=hypotheses,
        ref=references,
        device=device,
        reverse=reverse,
    )
    metrics, _ = compute_metrics(opts, search)
    return metrics


class _logging_to:
    """Send the s2s loggers to a log file (and to stderr when nothing else prints them) for a while."""

    def __init__(self, path: str):
        self.path = path
        self.logger = logging.getLogger("s2s")
        self.handlers: list[logging.Handler] = []

    def __enter__(self) -> None:
        self.handlers.append(logging.FileHandler(self.path, encoding="utf-8"))
        if not logging.getLogger().handlers:
            self.handlers.append(logging.StreamHandler())
        for handler in self.handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            self.logger.addHandler(handler)
        self.level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)

    def __exit__(self, *_: object) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self.logger.setLevel(self.level)
