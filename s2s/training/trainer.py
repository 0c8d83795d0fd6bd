"""The training loop: batch, forward, loss, backward, clip, step, log; validate and checkpoint.

Every `trainer.valid_every` updates and at each epoch end (unless `trainer.valid_each_epoch`
is false), and when training ends: validate (loss, perplexity, BLEU/chrF/exact match of
decoded output), save `last.pt`, and `best.pt` when the chosen metric improved, then decide
on early stopping.

One update consumes `optim.accumulate` batches on each of the W data-parallel ranks
(W = 1 without torchrun), so the effective batch is about
data.max_tokens x optim.accumulate x W target tokens. The loss is normalised by the
target tokens of the whole update on all ranks, so any (accumulate, W) pair with the
same product trains the same model, up to floating-point summation order.

The Trainer holds the mechanism only; around it: s2s/config_checks.py (the config, checked
first), builders.py (optimizer, moving average), schedule.py (learning rate), checkpointing.py
(what a checkpoint holds, resume, fine-tuning), stopping.py (budgets, early stopping),
validation.py, reporting.py (bar, log, metrics.json) and distributed.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import asdict
from typing import Any, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from s2s import checkpoint
from s2s.config import Config, Precision
from s2s.config_checks import check_config
from s2s.data.batching import Batch
from s2s.data.pipeline import TrainingData, prepare_training_data
from s2s.device import pick_device
from s2s.errors import S2SError
from s2s.metrics import HIGHER_IS_BETTER
from s2s.model.build import build_model
from s2s.model.seq2seq import Seq2Seq, count_parameters
from s2s.precision import resolve_precision
from s2s.training import checkpointing, distributed
from s2s.training.builders import make_ema, make_optimizer
from s2s.training.interrupts import StopRequest, stop_on_signals
from s2s.training.loss import rdrop_inputs, rdrop_loss, token_loss
from s2s.training.progress import Progress, UpdateStats
from s2s.training.reporting import Reporter, run_summary
from s2s.training.schedule import LearningRateSchedule
from s2s.training.stopping import Budget, patience_ran_out, record_validation
from s2s.training.validation import validate

log = logging.getLogger("s2s.train")


class Trainer:
    def __init__(self, cfg: Config, run_dir: str):
        check_config(cfg)
        self.cfg, self.run_dir = cfg, run_dir
        self.world = distributed.current()
        self.budget = Budget(cfg.trainer, self.world.size)
        cuda_rank = self.world.distributed and torch.cuda.is_available()
        self.device = torch.device("cuda", self.world.local_rank) if cuda_rank else pick_device(cfg.device)
        # `auto` measures bf16 against fp32 on each rank; all ranks take rank 0's answer.
        self.precision = distributed.broadcast(
            resolve_precision(cfg.trainer.precision, self.device, "trainer.precision")
        )
        # validation's decoding precision: fail now, not at the first validation
        resolve_precision(cfg.search.precision, self.device, "search.precision", decoding=True)
        resume_from = checkpointing.resume_source(cfg.trainer, run_dir)
        init_from = checkpointing.fine_tune_source(cfg.trainer, resuming=resume_from is not None)
        source = resume_from or init_from
        self.data: TrainingData = self._prepare_data(os.path.dirname(os.path.dirname(source)) if source else None)
        tokenizers = self.data.tokenizers
        self.vocabulary = {"src": tokenizers.src.get_piece_size(), "tgt": tokenizers.tgt.get_piece_size()}
        joint = tokenizers.src is tokenizers.tgt
        self.model: Seq2Seq = build_model(cfg.model, *self.vocabulary.values(), joint).to(self.device)
        self.train_model: torch.nn.Module = self.model
        if self.world.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = make_optimizer(self.model, cfg.optim)
        # the weights that are validated, saved as "model" and translated with: a moving average of the trained ones
        self.ema = make_ema(self.model, cfg.optim.ema_decay)
        self.eval_model: Seq2Seq = self.ema.module if self.ema is not None else self.model
        higher_is_better = HIGHER_IS_BETTER[cfg.trainer.early_stopping_metric]
        self.schedule = LearningRateSchedule(self.optimizer, cfg.optim, higher_is_better)
        self.progress = Progress()
        self.best_metrics: dict[str, Any] | None = None
        if resume_from:
            state = self._load_compatible(resume_from, "resume")
            parts = (self.model, self.ema, self.optimizer, self.schedule)
            self.progress = checkpointing.restore_training(state, *parts, self.world, cfg.seed)
            self.best_metrics = state.get("best_metrics")
            where = (self.progress.step, self.progress.epoch + 1, self.progress.position)
            log.info("resumed from %s at step %d (epoch %d, batch %d)", resume_from, *where)
        elif init_from:
            state = self._load_compatible(init_from, "fine-tune")
            parts = (self.model, self.ema, self.optimizer, self.schedule, self.progress)
            self.best_metrics = checkpointing.start_fine_tuning(state, cfg.trainer, *parts)
            t = cfg.trainer
            kept = ("reset" if reset else "kept" for reset in (t.reset_optimizer, t.reset_scheduler, t.reset_best))
            log.info("fine-tuning from %s (optimizer %s, schedule %s, best score %s)", init_from, *kept)
        self.reporter = Reporter(cfg.trainer, run_dir, self.world.is_main)
        log.info(
            "model: %d parameters; device %s, %s; %d rank(s); run directory %s",
            count_parameters(self.model), self.device, self.precision.value, self.world.size, run_dir,
        )  # fmt: skip

    def _prepare_data(self, reuse_vocabulary: str | None) -> TrainingData:
        """Rank 0 trains the tokenizers into the run directory; the other ranks then load them."""
        cfg = self.cfg
        data = prepare_training_data(cfg.data, self.run_dir, cfg.seed, reuse_vocabulary) if self.world.is_main else None
        distributed.barrier()
        return data or prepare_training_data(cfg.data, self.run_dir, cfg.seed, reuse_vocabulary or self.run_dir)

    def _load_compatible(self, path: str, purpose: str) -> dict[str, Any]:
        return checkpointing.load_compatible(path, purpose, self.cfg, self.vocabulary, self.device)

    # ----- the loop ---------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train until max_steps / max_epochs / max_minutes / early stopping, or until SIGINT / SIGTERM."""
        t, progress = self.cfg.trainer, self.progress
        total = t.max_steps if t.max_steps > 0 else self._updates_per_epoch(progress.epoch) * max(t.max_epochs, 1)
        self.reporter.open_bar(total, progress.step)
        last_metrics: dict[str, Any] = {}
        self.budget.start()  # data preparation is not counted
        with stop_on_signals() as stop_request:

            def should_stop() -> bool:
                spent = self.budget.spent(self.progress)
                return spent or patience_ran_out(self.progress, t) or distributed.any_rank(stop_request.requested)

            stop = self.budget.spent(self.progress)
            while not stop:
                for position, batches in self._updates(self.progress.epoch, self.progress.position):
                    self.progress.position = position + 1
                    if self.train_step(batches) and t.valid_every and self.progress.step % t.valid_every == 0:
                        last_metrics = self.validate_and_save()
                    stop = should_stop()
                    if stop:
                        break
                else:
                    self.progress.epoch += 1
                    self.progress.position = 0
                    if t.valid_each_epoch and self.progress.validated_at != self.progress.step:
                        last_metrics = self.validate_and_save()
                    stop = should_stop()
            self.reporter.close_bar()
            if distributed.any_rank(stop_request.requested):
                self._save_and_exit(stop_request)
            if self.progress.validated_at != self.progress.step:
                last_metrics = self.validate_and_save()
        self.reporter.close()
        return self._summary(last_metrics)

    def _updates_per_epoch(self, epoch: int) -> int:
        return distributed.updates_per_epoch(self.data.train.num_batches(epoch), self.cfg.optim.accumulate)

    def _updates(self, epoch: int, start: int) -> Iterator[tuple[int, list[Batch]]]:
        """(update index, this rank's batches) for the epoch's updates from `start` on."""
        plan = self.data.train.plan(epoch)  # compact: a few bytes per sentence, not a list of lists
        for update, mine in distributed.rank_updates(plan, self.cfg.optim.accumulate, start):
            yield update, [self.data.train.batch(indices) for indices in mine]

    def _save_and_exit(self, request: StopRequest) -> None:
        """Interrupted: keep all work done so far in last.pt, say how to resume, exit 128 + signal."""
        last = checkpoint.checkpoint_path(self.run_dir, "last")
        if self.world.is_main:
            checkpoint.save_atomic(self._checkpoint_state({}), last)
            self.reporter.close()
        distributed.barrier()
        message = (
            f"{request.name} received: stopped at step {self.progress.step} and saved {last}. Resume with: "
            f"python -m s2s.train hydra.run.dir={self.run_dir} trainer.resume=auto (and the same overrides)"
        )
        log.info(message)
        if self.world.is_main:
            print(message, file=sys.stderr, flush=True)
        distributed.shutdown()
        sys.exit(128 + int(request.signal_number or 0))

    def train_step(self, batches: list[Batch]) -> bool:
        """One update over this rank's batches: forward, loss, backward, clip, step.

        Returns False when the update was skipped for a non-finite gradient (the same
        decision on every rank, since gradients are averaged before the check).
        """
        started, o, ranks = time.perf_counter(), self.cfg.optim, self.world.size
        self.train_model.train()
        updates_per_epoch = lambda: self._updates_per_epoch(self.progress.epoch)  # noqa: E731
        self.schedule.before_update(
            self.progress.step, lambda: self.budget.used_fraction(self.progress, updates_per_epoch())
        )
        local_tokens = sum(b.num_tgt_tokens for b in batches)
        all_tokens = float(distributed.sum_over_ranks(torch.tensor([float(local_tokens)]))[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            last = i == len(batches) - 1
            no_sync = self.train_model.no_sync() if self.world.distributed and not last else contextlib.nullcontext()
            with no_sync:
                inputs = rdrop_inputs(batch) if o.rdrop_alpha > 0 else (batch.src, batch.src_lengths, batch.tgt_in)
                with self._autocast():
                    logits = self.train_model(*inputs, o.teacher_forcing)  # (B, T, V); R-Drop: (2B, T, V)
                if o.rdrop_alpha > 0:
                    loss, cross_entropy = rdrop_loss(logits, batch.tgt_out, o.label_smoothing, o.rdrop_alpha)
                else:
                    loss = cross_entropy = token_loss(logits, batch.tgt_out, o.label_smoothing)
                # DDP averages gradients over ranks; scaling by W makes the result sum / all_tokens
                (loss * (ranks / all_tokens)).backward()
            loss_sum += cross_entropy.detach()  # the log's loss and perplexity: cross-entropy only
        clip = o.clip_norm if o.clip_norm > 0 else float("inf")
        total_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)  # before clipping
        grad_norm, loss_total = torch.stack([total_norm.float(), loss_sum.float()]).tolist()  # the update's one sync
        loss_value = loss_total / max(local_tokens, 1)
        if not (math.isfinite(grad_norm) and math.isfinite(loss_value)):
            self._skip_step(loss_value, grad_norm)
            return False
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.progress.step += 1
        self.progress.bad_in_a_row = 0
        seconds = time.perf_counter() - started
        self.progress.train_seconds += seconds
        stats = UpdateStats(loss_value, local_tokens * ranks, seconds, grad_norm, grad_norm > clip)
        self.reporter.update(stats, self.progress, self.optimizer.param_groups[0]["lr"])
        return True

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == Precision.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _skip_step(self, loss: float, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        progress = self.progress
        progress.skipped_steps += 1
        progress.bad_in_a_row += 1
        log.warning(
            "skipped an update at step %d: loss %s, gradient norm %s (%d in a row)",
            progress.step, loss, grad_norm, progress.bad_in_a_row,
        )  # fmt: skip
        if progress.bad_in_a_row >= self.cfg.trainer.max_bad_steps:
            raise S2SError(
                f"training diverged: {progress.bad_in_a_row} non-finite losses or gradients in a row at step "
                f"{progress.step}; the last good checkpoint is {checkpoint.checkpoint_path(self.run_dir, 'last')}; "
                "try a lower optim.lr or optim.clip_norm"
            )

    # ----- validation and checkpoints ---------------------------------------------------------
    def validate_and_save(self) -> dict[str, Any]:
        """Rank 0 validates and saves; every rank then takes its progress and learning rate."""
        metrics = self._validate_and_save_main() if self.world.is_main else {}
        if self.world.distributed:
            lrs = [g["lr"] for g in self.optimizer.param_groups]
            shared = distributed.broadcast({"progress": asdict(self.progress), "lrs": lrs, "metrics": metrics})
            self.progress = Progress(**shared["progress"])
            for group, lr in zip(self.optimizer.param_groups, shared["lrs"]):
                group["lr"] = lr
            metrics = shared["metrics"]
        return metrics

    def _validate_and_save_main(self) -> dict[str, Any]:
        started = time.perf_counter()
        metrics = validate(self.eval_model, self.data, self.cfg, self.device, self.progress.step)
        self.reporter.validation(metrics, time.perf_counter() - started)
        improved = record_validation(self.progress, metrics, self.cfg.trainer.early_stopping_metric)
        if improved:
            self.best_metrics = metrics
        self.schedule.after_validation(self.progress.step, float(metrics[self.cfg.trainer.early_stopping_metric]))
        keep = self.cfg.trainer.keep_checkpoints
        checkpointing.save_validated(self._checkpoint_state(metrics), self.run_dir, improved, keep, self.progress.step)
        return metrics

    def _checkpoint_state(self, metrics: dict[str, Any]) -> dict[str, Any]:
        self.budget.tick(self.progress)
        return checkpointing.training_state(
            model=self.model, ema=self.ema, optimizer=self.optimizer, schedule=self.schedule, progress=self.progress,
            cfg=self.cfg, vocabulary=self.vocabulary, metrics=metrics, best_metrics=self.best_metrics,
        )  # fmt: skip

    def _summary(self, last_metrics: dict[str, Any]) -> dict[str, Any]:
        """metrics.json: best step and metrics (with sacreBLEU signatures), last metrics, times."""
        self.budget.tick(self.progress)
        checksums = distributed.gather(distributed.parameter_checksum(self.model))
        if len(set(checksums)) > 1:
            log.error("data-parallel ranks ended with different parameters: %s", checksums)
        summary = run_summary(
            self.cfg, self.run_dir, self.progress, count_parameters(self.model), self.best_metrics, last_metrics,
            self.world.size, checksums, self.data.counts,
        )  # fmt: skip
        if self.world.is_main:
            self.reporter.summary(summary, self.progress, os.path.join(self.run_dir, checkpoint.CHECKPOINT_DIR))
        return summary
