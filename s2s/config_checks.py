"""The checks a config must pass before anything is built: ranges, and settings that need each other.

The dataclasses in s2s/config.py fix every option's type; what a type cannot say (a fraction in
[0, 1), an option that only works with another) is checked here, once, when a run's config is
read (`check_config`, called by the Trainer before it prepares data) and whenever decoding
settings change (`check_search`: a run's search.* overrides, or the per-call options of
`Translator.translate`). Each error names the key to change. The library's own entry points
for one part check that part too (`prepare_training_data` runs `check_data`, `build_model`
runs `check_model`), so code that skips the Trainer gets the same errors.
"""

from __future__ import annotations

from s2s.config import (
    Attention,
    Cell,
    Config,
    DataConfig,
    DecoderConfig,
    ModelConfig,
    OptimConfig,
    Scheduler,
    SearchConfig,
    SubwordModel,
    TrainerConfig,
)
from s2s.errors import S2SError
from s2s.metrics import HIGHER_IS_BETTER


def check_config(cfg: Config) -> None:
    """Raise S2SError, naming the key, for the first setting of `cfg` that is out of range or conflicts."""
    check_data(cfg.data)
    check_model(cfg.model)
    if cfg.model.share_embeddings and not cfg.data.subword.joint:
        raise S2SError("model.share_embeddings=true needs one joint vocabulary (data.subword.joint=true)")
    check_optim(cfg.optim, cfg.trainer)
    check_trainer(cfg.trainer)
    check_search(cfg.search)


def check_data(cfg: DataConfig) -> None:
    alpha = cfg.subword.sampling_alpha
    if alpha < 0:
        raise S2SError(f"data.subword.sampling_alpha must be >= 0 (0 = off), got {alpha}")
    if cfg.subword.model_type == SubwordModel.bpe and alpha >= 1:
        raise S2SError(
            f"data.subword.sampling_alpha is the BPE-dropout probability for bpe and must be < 1, got {alpha}"
        )
    if not cfg.both_directions:
        return
    if not cfg.subword.joint:
        raise S2SError(
            "data.both_directions=true needs one joint vocabulary (data.subword.joint=true): "
            "the decoder writes both languages"
        )
    if cfg.src_lang == cfg.tgt_lang:
        raise S2SError(
            "data.both_directions=true needs two languages, "
            f"but data.src_lang and data.tgt_lang are both {cfg.src_lang!r}"
        )
    if alpha > 0:
        raise S2SError("data.both_directions=true does not support subword sampling (data.subword.sampling_alpha) yet")
    if not 0 < cfg.reverse_fraction <= 1:
        raise S2SError(f"data.reverse_fraction must be in (0, 1], got {cfg.reverse_fraction}")


def check_model(cfg: ModelConfig) -> None:
    check_decoder(cfg.decoder)


def check_decoder(cfg: DecoderConfig) -> None:
    feeds_attention = cfg.input_feeding and cfg.attention != Attention.none
    if cfg.feed_dropout and not feeds_attention:
        raise S2SError(
            "model.decoder.feed_dropout=true needs input feeding (model.decoder.input_feeding=true and an attention)"
        )
    if cfg.layer_norm and cfg.cell not in (Cell.lstm, Cell.gru):
        raise S2SError(f"model.decoder.layer_norm=true needs model.decoder.cell=lstm or gru, not {cfg.cell.value}")


def check_optim(cfg: OptimConfig, trainer: TrainerConfig) -> None:
    if cfg.accumulate < 1:
        raise S2SError(f"optim.accumulate must be at least 1, got {cfg.accumulate}")
    if cfg.rdrop_alpha < 0:
        raise S2SError(f"optim.rdrop_alpha must be >= 0 (0 = off), got {cfg.rdrop_alpha}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise S2SError(f"optim.label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise S2SError(f"optim.ema_decay must be in [0, 1) (0 turns the moving average off), got {cfg.ema_decay}")
    if cfg.scheduler == Scheduler.linear:
        if not 0.0 <= cfg.decay_start < 1.0:
            raise S2SError(f"optim.decay_start must be in [0, 1), got {cfg.decay_start}")
        if not (trainer.max_steps > 0 or trainer.max_epochs > 0 or trainer.max_minutes > 0):
            raise S2SError(
                "optim.scheduler=linear decays over the run's budget: "
                "set trainer.max_steps, trainer.max_epochs or trainer.max_minutes"
            )


def check_trainer(cfg: TrainerConfig) -> None:
    if cfg.early_stopping_metric not in HIGHER_IS_BETTER:
        raise S2SError(
            f"trainer.early_stopping_metric={cfg.early_stopping_metric} is not one of {sorted(HIGHER_IS_BETTER)}"
        )
    if cfg.valid_every < 0:
        raise S2SError(f"trainer.valid_every must be 0 (no validation by update count) or more, got {cfg.valid_every}")
    if cfg.log_every < 1:
        raise S2SError(f"trainer.log_every must be at least 1, got {cfg.log_every}")
    if cfg.keep_checkpoints < 0:
        raise S2SError(
            f"trainer.keep_checkpoints must be 0 (keep only last.pt and best.pt) or more, got {cfg.keep_checkpoints}"
        )


def check_search(cfg: SearchConfig) -> None:
    """Decoding settings (search.*, or the same names as per-call options of Translator.translate)."""
    if cfg.beam_size < 1:
        raise S2SError(f"search.beam_size must be at least 1, got {cfg.beam_size}")
    if cfg.n_best > cfg.beam_size:
        raise S2SError(f"search.n_best={cfg.n_best} must not exceed search.beam_size={cfg.beam_size}")
    if cfg.batch_size < 1:
        raise S2SError(f"search.batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.sampling and cfg.temperature <= 0:
        raise S2SError(f"search.temperature must be positive, got {cfg.temperature}")
    if not 0 < cfg.top_p <= 1:
        raise S2SError(f"search.top_p must be in (0, 1] (1 = off), got {cfg.top_p}")
    if cfg.reverse_weight < 0:
        raise S2SError(f"search.reverse_weight must be >= 0 (0 = off), got {cfg.reverse_weight}")
    if cfg.reverse_weight and cfg.sampling:
        raise S2SError(
            "search.reverse_weight reranks beam search; it does not apply to sampling (search.sampling=true)"
        )
