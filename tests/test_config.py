"""Hydra composition of the packaged configs (s2s/conf) into the typed Config (s2s.config): groups, overrides,
the schema, the experiment recipes."""

from __future__ import annotations

import dataclasses

import pytest

from s2s.config import Attention, Cell, Config
from tests.conftest import make_config


def test_defaults_compose_into_typed_config():
    cfg = make_config()
    assert isinstance(cfg, Config)
    assert cfg.data.format.value == "dates"
    assert cfg.model.encoder.cell is Cell.lstm
    assert cfg.model.decoder.attention is Attention.bahdanau


def test_groups_and_overrides_compose():
    cfg = make_config(
        "data=multi30k",
        "model=base",
        "search=beam",
        "model.decoder.cell=gru",
        "optim.lr=5e-4",
        "data.src_lang=en",
        "data.tgt_lang=de",
    )
    assert cfg.data.dir == "../shared/data/multi30k" and (cfg.data.src_lang, cfg.data.tgt_lang) == ("en", "de")
    assert cfg.model.decoder.hidden_size == 512 and cfg.model.decoder.cell is Cell.gru
    assert cfg.optim.lr == 5e-4 and cfg.search.beam_size == 5


def test_schema_rejects_unknown_keys_and_bad_values():
    with pytest.raises(Exception):
        make_config("model.decoder.cel=gru")
    with pytest.raises(Exception):
        make_config("model.decoder.attention=transformer")


@pytest.mark.parametrize("recipe, direction", [("multi30k_de_en", ("de", "en")), ("multi30k_en_de", ("en", "de"))])
def test_experiment_recipes_compose(recipe, direction):
    cfg = make_config(f"experiment={recipe}", "trainer.max_epochs=3")
    assert (cfg.data.src_lang, cfg.data.tgt_lang) == direction
    assert cfg.data.name == "multi30k" and cfg.model.decoder.hidden_size == 512
    assert cfg.trainer.early_stopping_metric == "bleu" and cfg.trainer.max_epochs == 3 and cfg.trainer.max_minutes == 57
    assert cfg.trainer.precision.value == "auto" and cfg.optim.ema_decay == 0.999


def test_fp32_recipe_is_the_de_en_recipe_with_less_dropout():
    base, fp32 = make_config("experiment=multi30k_de_en"), make_config("experiment=multi30k_de_en_fp32")
    assert (fp32.data.src_lang, fp32.data.tgt_lang) == ("de", "en") and fp32.trainer.precision.value == "fp32"
    assert fp32.model.embedding_dropout == fp32.model.encoder.dropout == fp32.model.decoder.dropout == 0.2
    assert base.model.embedding_dropout == base.model.encoder.dropout == base.model.decoder.dropout == 0.3
    for section in ("data", "optim", "search"):
        assert getattr(fp32, section) == getattr(base, section), section
    assert fp32.trainer.max_minutes == base.trainer.max_minutes == 57
    assert fp32.model.decoder.hidden_size == base.model.decoder.hidden_size == 512

    # nothing else differs: the model only in its dropouts, the trainer only in its precision
    def without_dropout(model):
        encoder, decoder = (
            dataclasses.replace(model.encoder, dropout=0.0),
            dataclasses.replace(model.decoder, dropout=0.0),
        )
        return dataclasses.replace(model, embedding_dropout=0.0, encoder=encoder, decoder=decoder)

    assert without_dropout(fp32.model) == without_dropout(base.model)
    assert dataclasses.replace(fp32.trainer, precision=base.trainer.precision) == base.trainer


def test_en_de_fp32_recipe_is_the_de_en_fp32_recipe_in_the_other_direction():
    de_en, en_de = make_config("experiment=multi30k_de_en_fp32"), make_config("experiment=multi30k_en_de_fp32")
    assert (en_de.data.src_lang, en_de.data.tgt_lang) == ("en", "de") and en_de.trainer.precision.value == "fp32"
    assert en_de.model.word_dropout == 0.0 and en_de.optim.scheduler.value == "plateau"
    assert dataclasses.replace(en_de.data, src_lang="de", tgt_lang="en") == de_en.data
    for section in ("model", "optim", "search", "trainer"):
        assert getattr(en_de, section) == getattr(de_en, section), section
