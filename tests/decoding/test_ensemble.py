"""Ensembles decode as one model: an ensemble of one is the model, of two copies the same scores."""

from __future__ import annotations

import copy
import functools
import random

import pytest
import torch

from s2s.config import Attention, Cell, SearchConfig, config_as_dict
from s2s.data.batching import make_batch
from s2s.data.subwords import Tokenizers
from s2s.decoding.forced import token_log_probs
from s2s.decoding.loading import check_same_task
from s2s.decoding.search import decode
from s2s.errors import S2SError
from s2s.model.ensemble import Combine, Ensemble
from s2s.model_file import ModelSource
from tests.helpers import half_trained_model, random_ids, train_tokenizer

SEARCHES = [
    SearchConfig(beam_size=1),
    SearchConfig(beam_size=4, n_best=3, length_penalty=1.0),
    SearchConfig(sampling=True, temperature=0.8, top_p=0.9),
]


@functools.lru_cache(maxsize=None)
def _trained(seed: int = 0, **kwargs) -> torch.nn.Module:
    """half_trained_model, trained once per module: decoding never changes it."""
    return half_trained_model(seed=seed, **kwargs)


def _batch(seed: int = 3, count: int = 6):
    return make_batch(random_ids(random.Random(seed), count, min_len=2, max_len=7), None, range(count))


def _decoded(model, cfg: SearchConfig, batch, seed: int = 5):
    generator = torch.Generator().manual_seed(seed)
    return [[(h.tokens, h.score) for h in n_best] for n_best in decode(model, batch, cfg, generator)]


def _assert_same(got, want, tolerance: float) -> None:
    assert [[t for t, _ in n] for n in got] == [[t for t, _ in n] for n in want]
    assert [s for n in got for _, s in n] == pytest.approx([s for n in want for _, s in n], abs=tolerance)


@pytest.mark.parametrize("cfg", SEARCHES, ids=["greedy", "beam", "sampling"])
def test_an_ensemble_of_one_is_the_model(cfg):
    model, batch = _trained(), _batch()
    _assert_same(_decoded(Ensemble([model]), cfg, batch), _decoded(model, cfg, batch), 1e-6)


@pytest.mark.parametrize("combine", list(Combine))
@pytest.mark.parametrize("cfg", SEARCHES[:2], ids=["greedy", "beam"])
def test_an_ensemble_of_two_copies_gives_the_models_outputs_and_scores(cfg, combine):
    model, batch = _trained(), _batch()
    ensemble = Ensemble([model, copy.deepcopy(model)], combine)
    _assert_same(_decoded(ensemble, cfg, batch), _decoded(model, cfg, batch), 1e-5)


@pytest.mark.parametrize("combine", list(Combine))
def test_the_step_combines_the_members_distributions(combine):
    """Members of different cells and sizes; each step's distribution is the mean of their
    probabilities (a mixture) or the renormalized mean of their log-probabilities."""
    first = _trained(seed=0)
    second = _trained(seed=1, decoder_cell=Cell.gru, hidden=12, attention=Attention.luong_general)
    ensemble = Ensemble([first, second], combine)
    batch = _batch()
    tokens = torch.tensor([5, 6, 7, 8, 9, 10])
    with torch.no_grad():
        combined, _, weights = ensemble.step(tokens, *reversed(ensemble.encode(batch.src, batch.src_lengths)))
        members = [m.step(tokens, *reversed(m.encode(batch.src, batch.src_lengths)))[0] for m in (first, second)]
    if combine == Combine.probs:
        expected = ((members[0].exp() + members[1].exp()) / 2).log()
    else:
        expected = torch.log_softmax((members[0] + members[1]) / 2, dim=-1)
    assert combined.shape == (6, members[0].size(1))
    assert torch.allclose(combined, expected, atol=1e-5)
    assert torch.allclose(combined.exp().sum(dim=1), torch.ones(6), atol=1e-5)
    assert weights is not None and torch.allclose(weights.sum(dim=1), torch.ones(6), atol=1e-5)


def test_an_ensemble_decodes_in_batches_as_one_by_one():
    ensemble = Ensemble([_trained(seed=0), _trained(seed=1, decoder_cell=Cell.gru)])
    rng = random.Random(9)
    sources = random_ids(rng, 5, min_len=2, max_len=7)
    cfg = SearchConfig(beam_size=3, n_best=2)
    together = _decoded(ensemble, cfg, make_batch(sources, None, range(5)))
    alone = [_decoded(ensemble, cfg, make_batch([s], None, [0]))[0] for s in sources]
    _assert_same(together, alone, 1e-4)


def test_forced_scores_of_an_ensemble_combine_per_token():
    model = _trained()
    sources = random_ids(random.Random(1), 4, min_len=2, max_len=6)
    targets = random_ids(random.Random(2), 4, min_len=0, max_len=5)
    cpu = torch.device("cpu")
    single = token_log_probs(model, sources, targets, cpu)
    twice = token_log_probs(Ensemble([model, copy.deepcopy(model)]), sources, targets, cpu)
    for a, b, target in zip(single, twice, targets):
        assert len(a) == len(target) + 1
        assert b == pytest.approx(a, abs=1e-5)


# ------------------------------------------------------------------ members must share the task


def _source(tokenizer, origin: str, **data) -> ModelSource:
    from tests.conftest import make_config

    cfg = make_config(*[f"data.{k}={v}" for k, v in data.items()])
    return ModelSource(
        weights={},
        config=config_as_dict(cfg),
        tokenizers=Tokenizers(src=tokenizer, tgt=tokenizer),
        origin=origin,
        checkpoint_path=origin,
    )


def test_members_with_other_vocabularies_or_languages_are_refused(tmp_path):
    small, large = train_tokenizer(tmp_path, "small", 40), train_tokenizer(tmp_path, "large", 50)
    check_same_task(_source(small, "A"), _source(small, "B"))  # the same: accepted
    with pytest.raises(S2SError, match=r"cannot ensemble B and A: their source vocabularies differ \(\d+ pieces"):
        check_same_task(_source(small, "A"), _source(large, "B"))
    with pytest.raises(S2SError, match="data.tgt_lang is de in one and iso in the other"):
        check_same_task(_source(small, "A"), _source(small, "B", tgt_lang="de"))


def test_an_empty_ensemble_is_refused():
    with pytest.raises(ValueError):
        Ensemble([])
