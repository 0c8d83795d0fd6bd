"""The training loop: batch, forward, loss, backward, clip, step, log; validate and checkpoint.

Every `trainer.valid_every` updates and at each epoch end (unless `trainer.valid_each_epoch`
is false), and when training ends: validate (loss, perplexity,
BLEU/chrF/exact match of decoded output), save `last.pt`, and `best.pt` when the chosen
metric improved, then decide on early stopping.

One update consumes `optim.accumulate` batches on each of the W data-parallel ranks
(W = 1 without torchrun), so the effective batch is about
data.max_tokens x optim.accumulate x W target tokens. The loss is normalised by the
target tokens of the whole update on all ranks, so any (accumulate, W) pair with the
same product trains the same model, up to floating-point summation order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from s2s import checkpoint
from s2s.config import Config, Optimizer, Precision, Scheduler
from s2s.data.batching import Batch
from s2s.data.pipeline import TrainingData, prepare_training_data
from s2s.decoding.translator import Translator
from s2s.device import pick_device
from s2s.errors import S2SError
from s2s.metrics import HIGHER_IS_BETTER, perplexity, score
from s2s.model.build import build_model
from s2s.model.seq2seq import Seq2Seq, count_parameters
from s2s.precision import resolve_precision
from s2s.special_tokens import PAD
from s2s.training import distributed
from s2s.training.interrupts import StopRequest, stop_on_signals
from s2s.training.loss import smoothed_cross_entropy, symmetric_kl
from s2s.training.run_log import RunLog
from s2s.training.schedule import budget_fraction, linear_decay_lr, warmup_factor

log = logging.getLogger("s2s.train")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0  # optimizer updates done
    epoch: int = 0  # current epoch (0-based)
    position: int = 0  # updates of the current epoch already done
    best_score: float | None = None  # best value of the early-stopping metric
    best_step: int = 0
    stale_validations: int = 0  # validations since the metric last improved
    train_seconds: float = 0.0  # time spent in training steps, summed over resumptions
    wall_seconds: float = 0.0  # wall-clock time of the run (data preparation excluded), summed over resumptions
    validated_at: int = -1  # step of the latest validation (a resumed run must not repeat it)
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient
    bad_in_a_row: int = 0  # consecutive skipped updates


class UpdateStats(NamedTuple):
    """One optimizer update, as the log reports it."""

    loss: float  # mean token loss on this rank
    tokens: int  # target tokens of the update, all ranks
    seconds: float
    grad_norm: float  # global gradient norm before clipping
    clipped: bool  # optim.clip_norm scaled the gradient down


def config_as_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain types (enums as strings), safe inside a weights_only checkpoint."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)  # type: ignore[return-value]


def token_loss(logits: torch.Tensor, gold: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Summed cross-entropy over non-padding tokens: logits (B, T, V), gold (B, T) -> fp32 scalar."""
    return smoothed_cross_entropy(logits.flatten(0, 1), gold.flatten(), label_smoothing, PAD)


def twice(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """R-Drop's input: src, src_lengths and tgt_in with every sentence twice, (2B, ...), first copies first."""
    return tuple(torch.cat([t, t]) for t in (batch.src, batch.src_lengths, batch.tgt_in))  # type: ignore[return-value]


def rdrop_loss(
    logits: torch.Tensor, gold: torch.Tensor, label_smoothing: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (2B, T, V) of a batch run twice (`twice`), gold (B, T) -> (loss, cross-entropy), fp32 sums over tokens.

    R-Drop's per-pair loss (Liang et al., 2021), CE_1 + CE_2 + alpha/2 (KL(p||q) + KL(q||p)), halved so that
    it is on one copy's scale (the learning rate and the logged loss mean what they mean without it).
    """
    cross_entropy = token_loss(logits, torch.cat([gold, gold]), label_smoothing) / 2  # both copies in one pass
    first, second = logits.flatten(0, 1).chunk(2)  # (B*T, V) each
    consistency = symmetric_kl(first, second, gold.flatten(), PAD)
    return cross_entropy + alpha / 4 * consistency, cross_entropy


def warmed_up_ema(decay: float):
    """The moving-average update for `AveragedModel`: avg <- d * avg + (1 - d) * weights with
    d = min(decay, (1 + n) / (10 + n)) after n updates, so that early averages are not dominated
    by the random initial weights (the warm-up of TensorFlow's ExponentialMovingAverage)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


def parameter_checksum(model: torch.nn.Module) -> str:
    """A short hash of all parameters, to check that data-parallel ranks agree."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class Trainer:
    def __init__(self, cfg: Config, run_dir: str):
        self.cfg, self.run_dir = cfg, run_dir
        self.clock = time.perf_counter()  # wall-clock bookkeeping for progress.wall_seconds
        if cfg.trainer.early_stopping_metric not in HIGHER_IS_BETTER:
            raise S2SError(
                f"trainer.early_stopping_metric={cfg.trainer.early_stopping_metric} is not one of {sorted(HIGHER_IS_BETTER)}"
            )
        self.world = distributed.current()
        self.device = (
            torch.device("cuda", self.world.local_rank)
            if self.world.distributed and torch.cuda.is_available()
            else pick_device(cfg.device)
        )
        # `auto` measures bf16 against fp32 on each rank; all ranks take rank 0's answer.
        self.precision = distributed.broadcast(
            resolve_precision(cfg.trainer.precision, self.device, "trainer.precision")
        )
        resolve_precision(
            cfg.search.precision, self.device, "search.precision", decoding=True
        )  # validation's: fail now, not at the first validation
        if cfg.optim.accumulate < 1:
            raise S2SError(f"optim.accumulate must be at least 1, got {cfg.optim.accumulate}")
        if cfg.optim.rdrop_alpha < 0:
            raise S2SError(f"optim.rdrop_alpha must be >= 0 (0 = off), got {cfg.optim.rdrop_alpha}")
        if not 0.0 <= cfg.optim.label_smoothing < 1.0:
            raise S2SError(f"optim.label_smoothing must be in [0, 1), got {cfg.optim.label_smoothing}")
        if cfg.optim.scheduler == Scheduler.linear:
            if not 0.0 <= cfg.optim.decay_start < 1.0:
                raise S2SError(f"optim.decay_start must be in [0, 1), got {cfg.optim.decay_start}")
            if not (cfg.trainer.max_steps > 0 or cfg.trainer.max_epochs > 0 or cfg.trainer.max_minutes > 0):
                raise S2SError(
                    "optim.scheduler=linear decays over the run's budget: set trainer.max_steps, trainer.max_epochs or trainer.max_minutes"
                )
        if cfg.trainer.valid_every < 0:
            raise S2SError(
                f"trainer.valid_every must be 0 (no validation by update count) or more, got {cfg.trainer.valid_every}"
            )
        if cfg.trainer.log_every < 1:
            raise S2SError(f"trainer.log_every must be at least 1, got {cfg.trainer.log_every}")
        if cfg.trainer.keep_checkpoints < 0:
            raise S2SError(
                f"trainer.keep_checkpoints must be 0 (keep only last.pt and best.pt) or more, got {cfg.trainer.keep_checkpoints}"
            )
        if not 0.0 <= cfg.optim.ema_decay < 1.0:
            raise S2SError(
                f"optim.ema_decay must be in [0, 1) (0 turns the moving average off), got {cfg.optim.ema_decay}"
            )
        resume_from = self._resume_source()
        init_from = (
            checkpoint.resolve_checkpoint(cfg.trainer.init_from, "best")[1]
            if cfg.trainer.init_from and not resume_from
            else None
        )
        source = resume_from or init_from
        reuse_vocabulary = os.path.dirname(os.path.dirname(source)) if source else None
        self.data: TrainingData = self._prepare_data(reuse_vocabulary)
        self.model: Seq2Seq = build_model(
            cfg.model,
            self.data.tokenizers.src.get_piece_size(),
            self.data.tokenizers.tgt.get_piece_size(),
            self.data.tokenizers.src is self.data.tokenizers.tgt,
        ).to(self.device)
        self.train_model: torch.nn.Module = self.model
        if self.world.distributed:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = self._make_optimizer()
        # the weights that are validated, saved as "model" and translated with: an EMA of the trained ones, or those
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=warmed_up_ema(cfg.optim.ema_decay), use_buffers=True)
            if cfg.optim.ema_decay > 0
            else None
        )
        self.eval_model: Seq2Seq = self.ema.module if self.ema is not None else self.model
        mode = "max" if HIGHER_IS_BETTER[cfg.trainer.early_stopping_metric] else "min"
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode=mode,
            factor=cfg.optim.plateau_factor,
            patience=cfg.optim.plateau_patience,
            min_lr=cfg.optim.min_lr,
        )
        self.progress = Progress()
        self.elapsed_seconds = 0.0  # wall seconds as all ranks agree on them, updated once per update by _finished()
        self.best_metrics: dict[str, Any] | None = None
        self.recent: list[UpdateStats] = []  # the latest updates, for the progress bar and the log
        if resume_from:
            self._resume(resume_from)
        elif init_from:
            self._fine_tune_from(init_from)
        self.run_log = RunLog(run_dir, cfg.trainer.tensorboard) if self.world.is_main else None
        log.info(
            "model: %d parameters; device %s, %s; %d rank(s); run directory %s",
            count_parameters(self.model),
            self.device,
            self.precision.value,
            self.world.size,
            run_dir,
        )

    def _prepare_data(self, reuse_vocabulary: str | None) -> TrainingData:
        """Rank 0 trains the tokenizers into the run directory; the other ranks then load them."""
        data = (
            prepare_training_data(self.cfg.data, self.run_dir, self.cfg.seed, reuse_vocabulary)
            if self.world.is_main
            else None
        )
        distributed.barrier()
        return data or prepare_training_data(
            self.cfg.data, self.run_dir, self.cfg.seed, reuse_vocabulary or self.run_dir
        )

    # ----- set-up -----------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        kind = torch.optim.AdamW if o.name == Optimizer.adamw else torch.optim.Adam
        settings = dict(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        try:  # one fused kernel per update instead of several per parameter tensor
            return kind(self.model.parameters(), fused=True, **settings)
        except (RuntimeError, TypeError):  # older torch builds without fused Adam for this device
            return kind(self.model.parameters(), **settings)

    def _resume_source(self) -> str | None:
        """The checkpoint to continue from: trainer.resume=auto (this run dir) or a run dir / file."""
        resume = self.cfg.trainer.resume
        if not resume:
            return None
        if resume == "auto":
            path = checkpoint.checkpoint_path(self.run_dir, "last")
            if not os.path.isfile(path):
                log.info("trainer.resume=auto: no checkpoint in %s yet, starting fresh", self.run_dir)
                return None
            return path
        return checkpoint.resolve_checkpoint(resume, "last")[1]

    def _load_compatible(self, path: str, purpose: str) -> dict[str, Any]:
        """Load a checkpoint whose model shape and vocabulary match this run, else refuse."""
        state = checkpoint.load(path, self.device)
        if "model" not in state or "config" not in state:
            raise S2SError(f"cannot {purpose} from {path}: it is not an s2s checkpoint")
        if state["config"].get("model") != config_as_dict(self.cfg)["model"]:
            raise S2SError(
                f"cannot {purpose} from {path}: its model config differs from this run's; use the same model.* settings"
            )
        vocabulary = {
            "src": self.data.tokenizers.src.get_piece_size(),
            "tgt": self.data.tokenizers.tgt.get_piece_size(),
        }
        if state.get("vocabulary", vocabulary) != vocabulary:
            raise S2SError(
                f"cannot {purpose} from {path}: its vocabulary {state['vocabulary']} differs from this run's {vocabulary}"
            )
        return state

    def _resume(self, path: str) -> None:
        state = self._load_compatible(path, "resume")
        self.model.load_state_dict(state.get("trained_model", state["model"]))
        if self.ema is not None:
            self.ema.module.load_state_dict(state["model"])
            self.ema.n_averaged.fill_(int(state.get("ema_updates", self.progress.step)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.plateau.load_state_dict(state["scheduler"])
        self.progress = Progress(**state["progress"])
        random.setstate(_tuple_state(state["rng"]["python"]))
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if torch.cuda.is_available() and "cuda" in state["rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        self.best_metrics = state.get("best_metrics")
        if not self.world.is_main:  # the checkpoint holds rank 0's RNG; keep the ranks' dropout masks apart
            torch.manual_seed(self.cfg.seed + self.world.rank + 7919 * self.progress.step)
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            path,
            self.progress.step,
            self.progress.epoch + 1,
            self.progress.position,
        )

    def _fine_tune_from(self, path: str) -> None:
        """Start a new run from trained weights; optimizer, schedule and best score by their switches."""
        t = self.cfg.trainer
        state = self._load_compatible(path, "fine-tune")
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["model"])
        if not t.reset_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
        if not t.reset_scheduler:
            self.plateau.load_state_dict(state["scheduler"])
        if not t.reset_best:
            saved = state["progress"]
            self.progress.best_score, self.best_metrics = saved["best_score"], state.get("best_metrics")
        log.info(
            "fine-tuning from %s (optimizer %s, schedule %s, best score %s)",
            path,
            *("reset" if reset else "kept" for reset in (t.reset_optimizer, t.reset_scheduler, t.reset_best)),
        )

    # ----- the loop ---------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train until max_steps / max_epochs / early stopping, or until SIGINT / SIGTERM."""
        t = self.cfg.trainer
        total = t.max_steps if t.max_steps > 0 else self._updates_per_epoch(self.progress.epoch) * max(t.max_epochs, 1)
        show_bar = t.progress_bar and self.world.is_main
        bar = tqdm(
            total=total,
            initial=min(self.progress.step, total),
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=None if show_bar else True,
        )
        last_metrics: dict[str, Any] = {}
        self.clock = time.perf_counter()  # data preparation is not counted
        with stop_on_signals() as stop_request:
            stop = self._finished()
            while not stop:
                for position, batches in self._updates(self.progress.epoch, self.progress.position):
                    self.progress.position = position + 1
                    if self.train_step(batches):
                        self._report(bar)
                        if t.valid_every and self.progress.step % t.valid_every == 0:
                            last_metrics = self.validate_and_save()
                    stop = self._finished() or self._early_stop() or self._agree(stop_request.requested)
                    if stop:
                        break
                else:
                    self.progress.epoch += 1
                    self.progress.position = 0
                    if t.valid_each_epoch and self.progress.validated_at != self.progress.step:
                        last_metrics = self.validate_and_save()
                    stop = self._finished() or self._early_stop() or self._agree(stop_request.requested)
            bar.close()
            if self._agree(stop_request.requested):
                self._save_and_exit(stop_request)
            if self.progress.validated_at != self.progress.step:
                last_metrics = self.validate_and_save()
        if self.run_log is not None:
            self.run_log.close()
        return self._summary(last_metrics)

    def _updates_per_epoch(self, epoch: int) -> int:
        batches = self.data.train.num_batches(epoch)
        per_update = self.cfg.optim.accumulate * self.world.size
        if batches < per_update:
            raise S2SError(
                f"an epoch has only {batches} batches, fewer than optim.accumulate x ranks = {per_update}; "
                "lower data.max_tokens or optim.accumulate"
            )
        return batches // per_update

    def _updates(self, epoch: int, start: int):
        """Yield (update index, this rank's batches) for the epoch's updates from `start` on.

        Update u uses batches [u*G, (u+1)*G) of the shared epoch order (G = accumulate x ranks);
        rank r takes every ranks-th of them from r. The last partial group is dropped so all
        ranks do the same number of updates.
        """
        batches = self.data.train.plan(epoch)  # compact: a few bytes per sentence, not a list of lists
        per_update = self.cfg.optim.accumulate * self.world.size
        for update in range(start, self._updates_per_epoch(epoch)):
            mine = batches[update * per_update + self.world.rank : (update + 1) * per_update : self.world.size]
            yield update, [self.data.train.batch(indices) for indices in mine]

    def _agree(self, flag: bool) -> bool:
        """True on every rank if it is true on any (a signal may reach one rank first)."""
        if not self.world.distributed:
            return flag
        return bool(distributed.sum_over_ranks(torch.tensor([float(flag)]))[0] > 0)

    def _save_and_exit(self, request: StopRequest) -> None:
        """Interrupted: keep all work done so far in last.pt, say how to resume, exit 128 + signal."""
        if self.world.is_main:
            checkpoint.save_atomic(self._checkpoint_state({}), checkpoint.checkpoint_path(self.run_dir, "last"))
            self.run_log.close()
        distributed.barrier()
        message = (
            f"{request.name} received: stopped at step {self.progress.step} and saved {checkpoint.checkpoint_path(self.run_dir, 'last')}. "
            f"Resume with: python -m s2s.train hydra.run.dir={self.run_dir} trainer.resume=auto (and the same overrides)"
        )
        log.info(message)
        if self.world.is_main:
            print(message, file=sys.stderr, flush=True)
        distributed.shutdown()
        sys.exit(128 + int(request.signal_number or 0))

    def _finished(self) -> bool:
        t = self.cfg.trainer
        self._tick()
        if t.max_minutes > 0:  # the ranks' clocks differ slightly: all use their mean (one collective per update)
            wall = torch.tensor([self.progress.wall_seconds], dtype=torch.float64)
            self.elapsed_seconds = float(distributed.sum_over_ranks(wall)[0]) / self.world.size
        out_of_time = t.max_minutes > 0 and self.elapsed_seconds >= 60 * t.max_minutes
        return (
            (t.max_steps > 0 and self.progress.step >= t.max_steps)
            or (t.max_epochs > 0 and self.progress.epoch >= t.max_epochs)
            or out_of_time
        )

    def _tick(self) -> None:
        now = time.perf_counter()
        self.progress.wall_seconds += now - self.clock
        self.clock = now

    def _early_stop(self) -> bool:
        patience = self.cfg.trainer.early_stopping_patience
        if patience > 0 and self.progress.stale_validations >= patience:
            log.info(
                "early stopping: %s has not improved for %d validations",
                self.cfg.trainer.early_stopping_metric,
                patience,
            )
            return True
        return False

    def train_step(self, batches: list[Batch]) -> bool:
        """One update over this rank's batches: forward, loss, backward, clip, step.

        Returns False when the update was skipped for a non-finite gradient (the same
        decision on every rank, since gradients are averaged before the check).
        """
        started = time.perf_counter()
        self.train_model.train()
        self._set_lr()
        local_tokens = sum(b.num_tgt_tokens for b in batches)
        all_tokens = float(distributed.sum_over_ranks(torch.tensor([float(local_tokens)]))[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        rdrop = self.cfg.optim.rdrop_alpha > 0
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            last = i == len(batches) - 1
            no_sync = self.train_model.no_sync() if self.world.distributed and not last else contextlib.nullcontext()
            with no_sync:
                inputs = twice(batch) if rdrop else (batch.src, batch.src_lengths, batch.tgt_in)
                with self._autocast():
                    logits = self.train_model(*inputs, self.cfg.optim.teacher_forcing)  # (B, T, V); R-Drop: (2B, T, V)
                if rdrop:
                    loss, cross_entropy = rdrop_loss(
                        logits, batch.tgt_out, self.cfg.optim.label_smoothing, self.cfg.optim.rdrop_alpha
                    )
                else:
                    loss = cross_entropy = token_loss(logits, batch.tgt_out, self.cfg.optim.label_smoothing)
                # DDP averages gradients over ranks; scaling by W makes the result sum / all_tokens
                (loss * (self.world.size / all_tokens)).backward()
            loss_sum += cross_entropy.detach()  # the log's loss and perplexity: cross-entropy only
        clip = self.cfg.optim.clip_norm if self.cfg.optim.clip_norm > 0 else float("inf")
        total_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)  # before clipping
        grad_norm, loss_total = torch.stack(
            [total_norm.float(), loss_sum.float()]
        ).tolist()  # the one sync of the update
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
        self.recent = self.recent[-49:] + [
            UpdateStats(loss_value, local_tokens * self.world.size, seconds, grad_norm, grad_norm > clip)
        ]
        return True

    def _autocast(self):
        if self.precision == Precision.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _skip_step(self, loss: float, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.skipped_steps += 1
        self.progress.bad_in_a_row += 1
        log.warning(
            "skipped an update at step %d: loss %s, gradient norm %s (%d in a row)",
            self.progress.step,
            loss,
            grad_norm,
            self.progress.bad_in_a_row,
        )
        if self.progress.bad_in_a_row >= self.cfg.trainer.max_bad_steps:
            raise S2SError(
                f"training diverged: {self.progress.bad_in_a_row} non-finite losses or gradients in a row at step {self.progress.step}; "
                f"the last good checkpoint is {checkpoint.checkpoint_path(self.run_dir, 'last')}; try a lower optim.lr or optim.clip_norm"
            )

    def _set_lr(self) -> None:
        """Warm-up, then the linear schedule if chosen (the plateau schedule acts at validation)."""
        o = self.cfg.optim
        factor = warmup_factor(self.progress.step, o.warmup_steps)
        if factor is not None:
            lr = o.lr * factor
        elif o.scheduler == Scheduler.linear:
            lr = linear_decay_lr(o.lr, o.min_lr, self._budget_fraction(), o.decay_start)
        else:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _budget_fraction(self) -> float:
        t = self.cfg.trainer
        epoch_steps = self._updates_per_epoch(self.progress.epoch) * t.max_epochs if t.max_epochs > 0 else 0
        return budget_fraction(self.progress.step, self.elapsed_seconds, t.max_steps, epoch_steps, t.max_minutes)

    def _report(self, bar: tqdm) -> None:
        recent = self.recent
        mean_loss = sum(u.loss for u in recent) / len(recent)
        speed = sum(u.tokens for u in recent) / max(sum(u.seconds for u in recent), 1e-9)
        grad_norm = sum(u.grad_norm for u in recent) / len(recent)  # before clipping
        clipped = 100.0 * sum(u.clipped for u in recent) / len(recent)
        lr = self.optimizer.param_groups[0]["lr"]
        bar.update(1)
        bar.set_postfix(
            loss=f"{mean_loss:.3f}",
            tok_s=f"{speed:.0f}",
            gnorm=f"{grad_norm:.2f}",
            lr=f"{lr:.2e}",
            epoch=self.progress.epoch + 1,
            refresh=False,
        )
        if self.progress.step % self.cfg.trainer.log_every == 0 and self.world.is_main:
            log.info(
                "step %d  epoch %d  loss %.4f  ppl %.2f  lr %.2e  gnorm %.2f (%.0f%% clipped)  %.0f tok/s",
                self.progress.step,
                self.progress.epoch + 1,
                mean_loss,
                perplexity(mean_loss),
                lr,
                grad_norm,
                clipped,
                speed,
            )
            self.run_log.record(
                "train",
                self.progress.step,
                {
                    "loss": mean_loss,
                    "ppl": perplexity(mean_loss),
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "clipped_percent": clipped,
                    "tokens_per_second": speed,
                },
            )

    # ----- validation and checkpoints ---------------------------------------------------------
    @torch.inference_mode()
    def validation_loss(self) -> float:
        self.eval_model.eval()
        total, tokens = 0.0, 0
        for batch in self.data.valid.loss_batches:
            batch = batch.to(self.device)
            logits = self.eval_model(batch.src, batch.src_lengths, batch.tgt_in)
            total += float(token_loss(logits, batch.tgt_out, 0.0))
            tokens += batch.num_tgt_tokens
        return total / max(tokens, 1)

    def validate(self) -> dict[str, Any]:
        started = time.perf_counter()
        loss = self.validation_loss()
        limit = self.cfg.trainer.valid_max_sentences or len(self.data.valid.sources)
        sources, references = self.data.valid.sources[:limit], self.data.valid.references[:limit]
        reverse_tag = self.data.tokenizers.reverse_tag(self.cfg.data.src_lang, self.cfg.data.both_directions)
        translator = Translator(
            self.eval_model, self.data.tokenizers, self.cfg.search, self.device, self.cfg.data.lowercase, reverse_tag
        )
        hypotheses: list[str] = []
        chunk = 8 * self.cfg.search.batch_size
        show_bar = self.cfg.trainer.progress_bar and self.world.is_main
        for start in tqdm(
            range(0, len(sources), chunk),
            desc="validate",
            unit="chunk",
            leave=False,
            disable=None if show_bar else True,
        ):
            hypotheses += translator.translate(sources[start : start + chunk])
        metrics: dict[str, Any] = {
            "step": self.progress.step,
            "loss": round(loss, 4),
            "ppl": round(perplexity(loss), 2),
        }
        metrics.update(score(hypotheses, [r.lower() if self.cfg.data.lowercase else r for r in references]))
        log.info(
            "validation at step %d: loss %.4f  ppl %.2f  BLEU %.2f  chrF %.2f  exact %.2f%%  (%.1fs)",
            self.progress.step,
            loss,
            metrics["ppl"],
            metrics["bleu"],
            metrics["chrf"],
            metrics["exact_match"],
            time.perf_counter() - started,
        )
        return metrics

    def validate_and_save(self) -> dict[str, Any]:
        """Rank 0 validates and saves; every rank then takes its progress and learning rate."""
        metrics = self._validate_and_save_main() if self.world.is_main else {}
        if self.world.distributed:
            shared = distributed.broadcast(
                {
                    "progress": asdict(self.progress),
                    "lrs": [g["lr"] for g in self.optimizer.param_groups],
                    "metrics": metrics,
                }
            )
            self.progress = Progress(**shared["progress"])
            for group, lr in zip(self.optimizer.param_groups, shared["lrs"]):
                group["lr"] = lr
            metrics = shared["metrics"]
        return metrics

    def _validate_and_save_main(self) -> dict[str, Any]:
        metrics = self.validate()
        self.progress.validated_at = self.progress.step
        name = self.cfg.trainer.early_stopping_metric
        value = float(metrics[name])
        better = self.progress.best_score is None or (
            value > self.progress.best_score if HIGHER_IS_BETTER[name] else value < self.progress.best_score
        )
        improved = (
            better and math.isfinite(value) and math.isfinite(float(metrics["loss"]))
        )  # never a NaN model as best
        if improved:
            self.progress.best_score, self.progress.best_step, self.progress.stale_validations = (
                value,
                self.progress.step,
                0,
            )
            self.best_metrics = metrics
        else:
            self.progress.stale_validations += 1
        if (
            self.cfg.optim.scheduler == Scheduler.plateau
            and self.progress.step >= self.cfg.optim.warmup_steps
            and math.isfinite(value)
        ):
            self.plateau.step(value)
        state = self._checkpoint_state(metrics)
        checkpoint.save_atomic(state, checkpoint.checkpoint_path(self.run_dir, "last"))
        if improved:
            checkpoint.save_atomic(state, checkpoint.checkpoint_path(self.run_dir, "best"))
        if self.cfg.trainer.keep_checkpoints > 0:
            self._keep_weights(state)
        self.run_log.record("valid", self.progress.step, {k: v for k, v in metrics.items() if k != "step"})
        self.run_log.plot()
        return metrics

    def _keep_weights(self, state: dict[str, Any]) -> None:
        """Save this validation's weights (no optimizer state) as step-N.pt; drop all but the last keep_checkpoints."""
        weights = {key: value for key, value in state.items() if key not in ("optimizer", "scheduler", "rng")}
        checkpoint.save_atomic(weights, checkpoint.step_checkpoint_path(self.run_dir, self.progress.step))
        for old in checkpoint.step_checkpoints(self.run_dir)[: -self.cfg.trainer.keep_checkpoints]:
            os.remove(old)

    def _checkpoint_state(self, metrics: dict[str, Any]) -> dict[str, Any]:
        self._tick()
        rng: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        ema = (
            {"trained_model": self.model.state_dict(), "ema_updates": int(self.ema.n_averaged)}
            if self.ema is not None
            else {}
        )
        return {
            "model": self.eval_model.state_dict(),  # what translate and fine-tuning load
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.plateau.state_dict(),
            "progress": asdict(self.progress),
            "rng": rng,
            "config": config_as_dict(self.cfg),
            "vocabulary": {
                "src": self.data.tokenizers.src.get_piece_size(),
                "tgt": self.data.tokenizers.tgt.get_piece_size(),
            },
            "metrics": metrics,
            "best_metrics": self.best_metrics,
        }

    def _summary(self, last_metrics: dict[str, Any]) -> dict[str, Any]:
        """Write metrics.json: best step and metrics (with sacreBLEU signatures), last metrics, times."""
        self._tick()
        checksums = distributed.gather(parameter_checksum(self.model))
        if len(set(checksums)) > 1:
            log.error("data-parallel ranks ended with different parameters: %s", checksums)
        summary = {
            "run_dir": self.run_dir,
            "steps": self.progress.step,
            "epochs": self.progress.epoch + (1 if self.progress.position else 0),
            "train_seconds": round(self.progress.train_seconds, 1),
            "wall_seconds": round(self.progress.wall_seconds, 1),
            "parameters": count_parameters(self.model),
            "early_stopping_metric": self.cfg.trainer.early_stopping_metric,
            "best_step": self.progress.best_step,
            "best": self.best_metrics or {},
            "last": last_metrics,
            "skipped_steps": self.progress.skipped_steps,
            "ranks": self.world.size,
            "effective_batch_tokens": self.cfg.data.max_tokens * self.cfg.optim.accumulate * self.world.size,
            "rank_parameter_checksums": checksums,
            "data": self.data.counts,
        }
        if not self.world.is_main:
            return summary
        with open(os.path.join(self.run_dir, "metrics.json"), "w", encoding="utf-8") as file:
            json.dump(summary, file, indent=2)
        log.info(
            "done: best %s %.2f at step %d; %d steps in %.0f s; checkpoints in %s",
            self.cfg.trainer.early_stopping_metric,
            self.progress.best_score or 0.0,
            self.progress.best_step,
            self.progress.step,
            self.progress.train_seconds,
            os.path.join(self.run_dir, checkpoint.CHECKPOINT_DIR),
        )
        return summary


def _tuple_state(state: Any) -> Any:
    """random.setstate wants tuples; a checkpoint may hand back lists."""
    return tuple(_tuple_state(s) for s in state) if isinstance(state, (list, tuple)) else state
