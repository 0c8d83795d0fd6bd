"""Training speed with the encoder's fused CPU path (s2s.model.aligned_rnn) against packed sequences.

    python scripts/encoder_ab.py [--run RECIPE_RUN] [--precision bf16] [--rounds 4] [--steps 10]

One process, one model, real Multi30k batches of the first epoch (the reference shape's
900-target-token batches, or with --run that run's own model and batches). Each round trains
the same batches once with packing and once with the fused path, alternating, and prints target
tokens/s per round and the medians. The two paths compute the same function
(tests/test_aligned_rnn.py), so the model's drift over the rounds is the same for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import s2s.model.encoder as encoder_module  # noqa: E402
from s2s.config import (
    Precision,  # noqa: E402
    config_from_dict,  # noqa: E402
)
from s2s.training.trainer import Trainer  # noqa: E402
from scripts.benchmark import ROOT, _max_tokens_for, _yaml, reference_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a recipe run directory: its model and batch size (default: the reference shape)")
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "multi30k"))
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="training steps per path per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = config_from_dict(_yaml(args.run)) if args.run else reference_config(args.data_dir)
    cfg.data.dir = args.data_dir
    cfg.trainer.tensorboard, cfg.trainer.progress_bar = False, False
    cfg.trainer.precision = Precision(args.precision)
    fused = encoder_module.fused_on_padding
    paths = {"packed": lambda rnn, device: False, "fused": fused}
    with tempfile.TemporaryDirectory() as run_dir:
        if not args.run:
            cfg.data.max_tokens = _max_tokens_for(cfg, 900, run_dir)
        trainer = Trainer(cfg, run_dir)
        plan = trainer.data.train.epoch_batches(0)
        batches = [trainer.data.train.batch(b) for b in plan[: 5 + args.rounds * args.steps]]
        for batch in batches[:5]:  # warm-up
            trainer.train_step([batch])
        speeds: dict[str, list[float]] = {name: [] for name in paths}
        for r in range(args.rounds):
            chunk = batches[5 + r * args.steps : 5 + (r + 1) * args.steps]
            for name, choose in paths.items():
                encoder_module.fused_on_padding = choose
                started = time.perf_counter()
                for batch in chunk:
                    trainer.train_step([batch])
                speeds[name].append(sum(b.num_tgt_tokens for b in chunk) / (time.perf_counter() - started))
            print(
                f"round {r + 1}: " + ", ".join(f"{name} {speeds[name][-1]:,.0f}" for name in paths) + " target tok/s",
                flush=True,
            )
        encoder_module.fused_on_padding = fused
    print(
        ", ".join(f"{name} median {statistics.median(v):,.0f}" for name, v in speeds.items())
        + f" target tok/s ({args.precision})"
    )


if __name__ == "__main__":
    main()
