"""`python -m s2s.train`: the Hydra entry point. Parses and checks the config, builds the
Trainer (s2s/training/trainer.py) and runs it. Under `torchrun` every rank runs this; they share one
run directory and train with DistributedDataParallel.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from s2s.arguments import check_overrides
from s2s.config import Config, register_configs
from s2s.errors import S2SError, user_errors_exit
from s2s.training import distributed
from s2s.training.trainer import Trainer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: Config, run_dir: str) -> dict[str, Any]:
    """Train with a typed config into run_dir; returns the summary written to metrics.json."""
    world = distributed.current()
    seed_everything(cfg.seed + world.rank)  # ranks draw different dropout masks
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if world.is_main:
        os.makedirs(run_dir, exist_ok=True)
        OmegaConf.save(OmegaConf.structured(cfg), os.path.join(run_dir, "config.yaml"))
    return Trainer(cfg, run_dir).train()


def _quiet_other_ranks() -> None:
    """Only rank 0 logs: the others keep warnings on the console and leave train.log alone."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def hydra_main(dict_cfg: DictConfig) -> float | None:
    with user_errors_exit():
        if not distributed.current().is_main:
            _quiet_other_ranks()
        cfg: Config = OmegaConf.to_object(dict_cfg)  # type: ignore[assignment]
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
        best = summary["best"].get(cfg.trainer.early_stopping_metric)
        return float(best) if best is not None else None  # the value sweepers optimize


def check_output_dir(args: list[str]) -> None:
    """Fail early, in one line, if the run directory cannot be written (Hydra would fail later)."""
    if "-m" in args or "--multirun" in args:
        return
    target = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), "outputs")
    try:
        os.makedirs(target, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as error:
        raise S2SError(
            f"cannot write to the run directory {target}: {error.strerror or error}; "
            "choose another with hydra.run.dir=PATH"
        ) from None


def main() -> None:
    with user_errors_exit():
        check_overrides(sys.argv[1:])
        check_output_dir(sys.argv[1:])
    if distributed.launched_by_torchrun():
        distributed.init_from_environment()
        if not any(arg.startswith("hydra.run.dir=") for arg in sys.argv[1:]):
            sys.argv.append(f"hydra.run.dir={distributed.shared_run_dir()}")
    try:
        hydra_main()
        # A rank that leaves while another still writes its last files tears gloo down under it.
        distributed.barrier()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
