"""Config checks made once when a run's config is read (s2s.config_checks): each names the key to change."""

from __future__ import annotations

import pytest

from s2s.config import SearchConfig
from s2s.config_checks import check_config, check_search
from s2s.errors import S2SError
from tests.conftest import TINY, make_config


def test_the_default_config_and_the_tiny_one_pass():
    check_config(make_config())
    check_config(make_config(*TINY))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.subword.sampling_alpha=-0.1"], "data.subword.sampling_alpha must be >= 0"),
        (["data.subword.model_type=bpe", "data.subword.sampling_alpha=1.0"], "BPE-dropout probability"),
        (["data.both_directions=true", "data.subword.joint=false"], "data.both_directions=true needs one joint"),
        (["data.both_directions=true", "data.src_lang=en", "data.tgt_lang=en"], "needs two languages"),
        (["data.both_directions=true", "data.reverse_fraction=0"], r"data.reverse_fraction must be in \(0, 1\]"),
        (["data.both_directions=true", "data.subword.sampling_alpha=0.2"], "does not support subword sampling"),
        (["model.decoder.input_feeding=false", "model.decoder.feed_dropout=true"], "feed_dropout=true needs input"),
        (["model.decoder.cell=rnn", "model.decoder.layer_norm=true"], "layer_norm=true needs model.decoder.cell"),
        (["model.share_embeddings=true", "data.subword.joint=false"], "share_embeddings=true needs one joint"),
        (["optim.accumulate=0"], "optim.accumulate must be at least 1"),
        (["optim.rdrop_alpha=-1"], "optim.rdrop_alpha must be >= 0"),
        (["optim.label_smoothing=1.0"], r"optim.label_smoothing must be in \[0, 1\)"),
        (["optim.ema_decay=1.0"], r"optim.ema_decay must be in \[0, 1\)"),
        (["optim.scheduler=linear", "optim.decay_start=1.0"], r"optim.decay_start must be in \[0, 1\)"),
        (["optim.scheduler=linear", "trainer.max_steps=0", "trainer.max_epochs=0"], "decays over the run's budget"),
        (["trainer.early_stopping_metric=rouge"], "trainer.early_stopping_metric=rouge is not one of"),
        (["trainer.valid_every=-1"], "trainer.valid_every must be 0"),
        (["trainer.log_every=0"], "trainer.log_every must be at least 1"),
        (["trainer.keep_checkpoints=-1"], "trainer.keep_checkpoints must be 0"),
        (["search.beam_size=0"], "search.beam_size must be at least 1"),
        (["search.beam_size=2", "search.n_best=3"], "search.n_best=3 must not exceed search.beam_size=2"),
        (["search.batch_size=0"], "search.batch_size must be at least 1"),
        (["search.sampling=true", "search.temperature=0"], "search.temperature must be positive"),
        (["search.reverse_weight=-1"], "search.reverse_weight must be >= 0"),
        (["search.sampling=true", "search.reverse_weight=1"], "does not apply to sampling"),
    ],
)
def test_a_bad_setting_is_one_error_naming_its_key(overrides, message):
    with pytest.raises(S2SError, match=message):
        check_config(make_config(*overrides))


def test_search_settings_are_checked_on_their_own_too():
    check_search(SearchConfig(beam_size=5, n_best=5))
    with pytest.raises(S2SError, match="must not exceed"):
        check_search(SearchConfig(beam_size=1, n_best=2))
