"""Tests for greedy search, beam search and sampling (s2s.decoding.search)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from s2s.config import Attention, Cell, SearchConfig
from s2s.data.batching import make_batch
from s2s.decoding.search import _block_size, beam_search, decode, greedy, max_output_lengths, sample, top_k
from s2s.special_tokens import BOS, EOS, PAD
from tests.helpers import half_trained_model, random_batch, random_ids, sequence_log_prob, tiny_model


def _greedy(model, batch, cfg=None, **kwargs):
    with torch.no_grad():
        return greedy(model, batch, cfg or SearchConfig(), **kwargs)


def _beam(model, batch, cfg):
    with torch.no_grad():
        return beam_search(model, batch, cfg)


@pytest.fixture(scope="module")
def trained():
    """Outputs of varied lengths that end in EOS before the length limit."""
    return half_trained_model(seed=0, steps=40)


def _sources(seed: int, count: int) -> list[list[int]]:
    return random_ids(random.Random(seed), count, min_len=1, max_len=7)


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize("rows,n,k", [(64, 40000, 10), (7, 8000, 1), (5, 60, 6), (3, 20, 1), (4, 96, 12), (2, 101, 3)])
def test_top_k_by_blocks_equals_topk(rows, n, k):
    """The block-maxima selection returns torch.topk's values and indices, -inf entries and whole -inf blocks
    included."""
    torch.manual_seed(n + k)
    scores = torch.randn(rows, n)
    scores[scores < -1.0] = float("-inf")  # about a sixth, as forbidden tokens and dead beams give
    scores[0, : n // 2] = float("-inf")  # a row with whole blocks of -inf
    values, indices = top_k(scores, k)
    expected_values, expected_indices = scores.topk(k, dim=1)
    assert torch.equal(values, expected_values)
    finite = expected_values.isfinite()  # the order among tied -inf entries is not defined
    assert torch.equal(indices[finite], expected_indices[finite])
    assert torch.equal(scores.gather(1, indices), values)
    assert (_block_size(n, k) is None) == (n == 101)  # a prime n cannot be split: plain topk


def test_top_k_when_fewer_than_k_scores_are_finite():
    scores = torch.full((2, 40), float("-inf"))
    scores[0, 7], scores[0, 33], scores[1, 12] = 1.0, 2.0, 0.5
    values, indices = top_k(scores, 4)
    assert values[0, :2].tolist() == [2.0, 1.0] and indices[0, :2].tolist() == [33, 7]
    assert values[1, 0].item() == 0.5 and indices[1, 0].item() == 12
    assert values[:, 2:].isneginf().all() and values[1, 1:].isneginf().all()


def test_max_output_lengths():
    lengths = torch.tensor([1, 2, 5, 11])  # including the source EOS
    assert max_output_lengths(lengths, SearchConfig(max_len_a=1.5, max_len_b=10)).tolist() == [10, 11, 16, 25]
    assert max_output_lengths(lengths, SearchConfig(max_len_a=0.0, max_len_b=0)).tolist() == [1, 1, 1, 1]
    assert max_output_lengths(lengths, SearchConfig(max_len_a=1.0, max_len_b=0)).tolist() == [1, 1, 4, 10]


def _never_eos(seed: int):
    model = tiny_model(seed=seed)
    with torch.no_grad():
        model.decoder.output.bias[EOS] -= 50.0
    return model


@pytest.mark.parametrize("beam_size", [1, 3])
def test_outputs_respect_per_sentence_limits(beam_size):
    model = _never_eos(1)
    src = [[4], [5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15]]
    batch = make_batch(src, None, range(4))
    cfg = SearchConfig(beam_size=beam_size, max_len_a=1.0, max_len_b=1)
    limits = max_output_lengths(batch.src_lengths, cfg).tolist()
    assert limits == [2, 4, 3, 7]
    hyps = [h[0] for h in _beam(model, batch, cfg)] if beam_size > 1 else _greedy(model, batch, cfg)
    # EOS is never wanted here, so every sentence runs to its own limit and is then cut
    assert [len(h.tokens) for h in hyps] == limits
    assert all(EOS not in h.tokens and all(t >= 4 or t == 1 for t in h.tokens) for h in hyps)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_sentences_finishing_at_different_steps(trained, beam_size):
    src = _sources(10, 8)
    batch = make_batch(src, None, range(8))
    cfg = SearchConfig(beam_size=beam_size, max_len_a=1.0, max_len_b=2)
    hyps = [h[0] for h in _beam(trained, batch, cfg)] if beam_size > 1 else _greedy(trained, batch, cfg)
    lengths = [len(h.tokens) for h in hyps]
    assert len(set(lengths)) >= 2  # they really finish at different steps
    for h, limit in zip(hyps, max_output_lengths(batch.src_lengths, cfg).tolist()):
        assert len(h.tokens) <= limit
        assert EOS not in h.tokens and PAD not in h.tokens


# ---------------------------------------------------------------- beam 1 == greedy


COMBOS = [
    (Cell.lstm, Cell.lstm, Attention.bahdanau),
    (Cell.gru, Cell.gru, Attention.luong_general),
    (Cell.rnn, Cell.lstm, Attention.none),
    (Cell.peephole_lstm, Cell.gru, Attention.bahdanau),
]


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("combo", range(len(COMBOS)))
def test_beam_size_one_equals_greedy(combo, length_penalty):
    cell, decoder_cell, attention = COMBOS[combo]
    model = tiny_model(seed=combo, cell=cell, decoder_cell=decoder_cell, attention=attention)
    with torch.no_grad():  # a wider output layer so the argmax is decisive and EOS sometimes wins
        model.decoder.output.weight.mul_(4.0)
        model.decoder.output.bias[EOS] += 1.0
    batch = random_batch(combo, 6, with_target=False, max_len=6)
    cfg = SearchConfig(beam_size=1, length_penalty=length_penalty, max_len_b=6)
    beam = _beam(model, batch, cfg)
    ref = _greedy(model, batch, cfg)
    assert [h[0].tokens for h in beam] == [h.tokens for h in ref]
    for [b], g in zip(beam, ref):
        penalty = ((5.0 + len(g.tokens) + 1) / 6.0) ** length_penalty
        assert b.score == pytest.approx(g.score / penalty, abs=1e-4)


def test_beam_size_one_equals_greedy_on_trained(trained):
    batch = make_batch(_sources(11, 10), None, range(10))
    cfg = SearchConfig(beam_size=1, length_penalty=1.0)
    assert [h[0].tokens for h in _beam(trained, batch, cfg)] == [h.tokens for h in _greedy(trained, batch, cfg)]


# ---------------------------------------------------------------- beam quality


def test_scores_are_teacher_forced_log_probs(trained):
    src = _sources(12, 6)
    batch = make_batch(src, None, range(6))
    greedy_hyps = _greedy(trained, batch, SearchConfig())
    beam_hyps = _beam(trained, batch, SearchConfig(beam_size=5, length_penalty=0.0, n_best=5))
    for s, g, beams in zip(src, greedy_hyps, beam_hyps):
        assert g.score == pytest.approx(sequence_log_prob(trained, s, g.tokens), abs=1e-4)
        for h in beams:
            assert h.score == pytest.approx(sequence_log_prob(trained, s, h.tokens), abs=1e-4)


def test_beam_not_worse_than_greedy(trained):
    """Beam search is not guaranteed to beat greedy in general (the greedy prefix can be pruned),
    but on this fixed setup it does, by model log-probability recomputed with teacher forcing."""
    src = _sources(13, 8)
    batch = make_batch(src, None, range(8))
    greedy_hyps = _greedy(trained, batch, SearchConfig())
    beam_hyps = _beam(trained, batch, SearchConfig(beam_size=5, length_penalty=0.0))
    better = 0
    for s, g, [b] in zip(src, greedy_hyps, beam_hyps):
        g_lp, b_lp = sequence_log_prob(trained, s, g.tokens), sequence_log_prob(trained, s, b.tokens)
        assert b_lp >= g_lp - 1e-4
        better += b_lp > g_lp + 1e-4
    assert better >= 1  # and the beam actually finds something better somewhere


def _all_outputs(vocab: int, limit: int):
    tokens = [t for t in range(vocab) if t != EOS]
    for length in range(limit + 1):
        yield from (list(seq) for seq in itertools.product(tokens, repeat=length))


def _search_objectives(model, src: list[int], outputs: list[list[int]], limit: int, alpha: float) -> torch.Tensor:
    """What the search maximizes for each output: log p(tokens) + log p(EOS) (EOS forced, scoring 0,
    at the limit), divided by the GNMT length penalty. Outputs may contain PAD, so no make_batch here."""
    n, width = len(outputs), limit + 1
    tgt_in = torch.full((n, width), BOS)
    for row, out in enumerate(outputs):
        tgt_in[row, 1 : len(out) + 1] = torch.tensor(out, dtype=torch.long)
    source = make_batch([src] * n, None, range(n))
    with torch.no_grad():
        log_probs = torch.log_softmax(model(source.src, source.src_lengths, tgt_in), dim=-1)  # (n, W, V)
    scores = []
    for row, out in enumerate(outputs):
        total = sum(float(log_probs[row, t, tok]) for t, tok in enumerate(out))
        if len(out) < limit:
            total += float(log_probs[row, len(out), EOS])
        scores.append(total / ((5.0 + len(out) + 1) / 6.0) ** alpha)
    return torch.tensor(scores)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_is_exact_search(alpha):
    """With K >= V**limit nothing is ever pruned, so beam search must find the best output of all."""
    vocab, limit = 6, 3
    model = tiny_model(seed=4, tgt_vocab=vocab)
    with torch.no_grad():
        model.decoder.output.weight.mul_(3.0)
    src = [[5, 9, 7], [12, 4]]
    batch = make_batch(src, None, range(2))
    cfg = SearchConfig(beam_size=vocab**limit, length_penalty=alpha, max_len_a=0.0, max_len_b=limit)
    beams = _beam(model, batch, cfg)
    greedy_hyps = _greedy(model, batch, cfg)
    outputs = list(_all_outputs(vocab, limit))
    for s, [best, *_], g in zip(src, beams, greedy_hyps):
        objectives = _search_objectives(model, s, outputs, limit, alpha)
        top = int(objectives.argmax())
        assert best.score == pytest.approx(float(objectives[top]), abs=1e-4)
        assert best.tokens == [t for t in outputs[top] if t != PAD]
        greedy_objective = float(objectives[outputs.index(g.tokens)])
        assert best.score >= greedy_objective - 1e-4


# ---------------------------------------------------------------- beam shapes and n-best


def test_n_best_sorted_and_distinct(trained):
    batch = make_batch(_sources(14, 5), None, range(5))
    results = _beam(trained, batch, SearchConfig(beam_size=5, n_best=3, length_penalty=1.0))
    assert len(results) == 5
    for hyps in results:
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert all(torch.isfinite(torch.tensor(scores)))
        assert len({tuple(h.tokens) for h in hyps}) == 3
    # the 1-best is the same whether or not more hypotheses are asked for
    one = _beam(trained, batch, SearchConfig(beam_size=5, n_best=1, length_penalty=1.0))
    assert [h[0].tokens for h in one] == [h[0].tokens for h in results]
    assert all(len(h) == 1 for h in one)


def test_decode_returns_lists_per_sentence(trained):
    batch = make_batch(_sources(15, 3), None, range(3))
    for cfg in (SearchConfig(beam_size=1), SearchConfig(beam_size=3, n_best=2), SearchConfig(sampling=True)):
        result = decode(trained, batch, cfg, generator=torch.Generator().manual_seed(0))
        assert len(result) == 3
        assert all(len(hyps) == cfg.n_best for hyps in result)


def test_beam_larger_than_vocabulary():
    vocab = 6  # 4 special ids + 2 real tokens; K=8 > V
    model = tiny_model(seed=5, tgt_vocab=vocab)
    batch = make_batch([[4, 5, 6], [7]], None, range(2))
    results = _beam(model, batch, SearchConfig(beam_size=8, n_best=8, max_len_a=0.0, max_len_b=1))
    for hyps in results:
        assert 1 <= len(hyps) <= 8
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert all(s > float("-inf") for s in scores)
        assert all(len(h.tokens) <= 1 and all(t < vocab and t != EOS for t in h.tokens) for h in hyps)


@pytest.mark.parametrize("count", [1, 2])
def test_beam_larger_than_batch(trained, count):
    batch = make_batch(_sources(16, count), None, range(count))
    results = _beam(trained, batch, SearchConfig(beam_size=8, n_best=8))
    assert len(results) == count
    for hyps in results:
        assert len(hyps) == 8
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)


# ---------------------------------------------------------------- batch independence


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_results_do_not_depend_on_the_batch(trained, length_penalty):
    src = _sources(17, 7)
    cfg = SearchConfig(beam_size=4, n_best=2, length_penalty=length_penalty)
    together = _beam(trained, make_batch(src, None, range(7)), cfg)
    for s, hyps in zip(src, together):
        [alone] = _beam(trained, make_batch([s], None, [0]), cfg)
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-4)


@pytest.mark.parametrize("combo", range(len(COMBOS)))
def test_greedy_results_do_not_depend_on_the_batch(combo):
    cell, decoder_cell, attention = COMBOS[combo]
    model = tiny_model(seed=combo, cell=cell, decoder_cell=decoder_cell, attention=attention)
    with torch.no_grad():
        model.decoder.output.weight.mul_(4.0)
        model.decoder.output.bias[EOS] += 1.0
    src = _sources(18 + combo, 6)
    together = _greedy(model, make_batch(src, None, range(6)), SearchConfig(max_len_b=6))
    for s, h in zip(src, together):
        [alone] = _greedy(model, make_batch([s], None, [0]), SearchConfig(max_len_b=6))
        assert h.tokens == alone.tokens
        assert h.score == pytest.approx(alone.score, abs=1e-4)


# ---------------------------------------------------------------- sampling


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = tiny_model(seed=6)
    batch = random_batch(6, 6, with_target=False)
    cfg = SearchConfig(sampling=True, max_len_b=8)
    run = lambda seed: decode(model, batch, cfg, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    first, second, other = run(0), run(0), run(1)
    assert [h[0].tokens for h in first] == [h[0].tokens for h in second]
    assert [h[0].score for h in first] == [h[0].score for h in second]
    assert [h[0].tokens for h in first] != [h[0].tokens for h in other]


def test_top_k_one_sampling_equals_greedy(trained):
    batch = make_batch(_sources(19, 6), None, range(6))
    cfg = SearchConfig(sampling=True, top_k=1, temperature=1.7)
    sampled = decode(trained, batch, cfg, generator=torch.Generator().manual_seed(3))
    ref = _greedy(trained, batch)
    assert [h[0].tokens for h in sampled] == [h.tokens for h in ref]
    assert [h[0].score for h in sampled] == pytest.approx([h.score for h in ref], abs=1e-5)


def test_sampling_temperature_near_zero_equals_greedy(trained):
    batch = make_batch(_sources(20, 4), None, range(4))
    with torch.no_grad():
        sampled = sample(
            trained, batch, SearchConfig(sampling=True, temperature=1e-4), torch.Generator().manual_seed(0)
        )
    assert [h.tokens for h in sampled] == [h.tokens for h in _greedy(trained, batch)]


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("attention", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_greedy_returns_attention_rows(attention):
    decoder_hidden = 32 if attention == Attention.luong_dot else 16
    model = tiny_model(seed=7, attention=attention, decoder_hidden=decoder_hidden)
    batch = make_batch([[4, 5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], None, range(3))
    S = batch.src.size(1)
    hyps = _greedy(model, batch, SearchConfig(max_len_b=4), return_attention=True)
    assert any(len(h.tokens) > 0 for h in hyps)
    for row, h in enumerate(hyps):
        assert h.attention.shape == (len(h.tokens) + 1, S)
        torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.tokens) + 1))
        length = int(batch.src_lengths[row])
        assert (h.attention[:, length:] == 0).all()
    # without the flag nothing is kept
    assert all(h.attention is None for h in _greedy(model, batch, SearchConfig(max_len_b=4)))


# ---------------------------------------------------------------- known bugs


def test_score_of_output_cut_at_limit_includes_eos_log_prob():
    model = tiny_model(seed=8)
    with torch.no_grad():
        model.decoder.output.bias[EOS] -= 4.0
    src = [[4, 5, 6], [7, 8]]
    batch = make_batch(src, None, range(2))
    cfg = SearchConfig(max_len_a=0.0, max_len_b=4)
    hyps = _greedy(model, batch, cfg)
    assert all(len(h.tokens) == 4 for h in hyps)  # cut at the limit
    for s, h in zip(src, hyps):
        assert h.score == pytest.approx(sequence_log_prob(model, s, h.tokens), abs=1e-4)


def _favouring(special: int):
    model = half_trained_model(seed=0, steps=40)
    with torch.no_grad():
        model.decoder.output.bias[special] += 6.0
    return model


@pytest.mark.slow
def test_search_never_emits_pad():
    model = _favouring(PAD)
    batch = make_batch(_sources(21, 4), None, range(4))
    for h in _greedy(model, batch, SearchConfig(max_len_b=5), return_attention=True):
        assert h.attention.size(0) == len(h.tokens) + 1
    for beams in _beam(model, batch, SearchConfig(beam_size=5, n_best=5, max_len_b=5)):
        assert len({tuple(h.tokens) for h in beams}) == len(beams)  # no duplicates once PAD is dropped


@pytest.mark.slow
def test_search_never_emits_bos():
    model = _favouring(BOS)
    batch = make_batch(_sources(21, 4), None, range(4))
    assert all(BOS not in h.tokens for h in _greedy(model, batch, SearchConfig(max_len_b=5)))
    for beams in _beam(model, batch, SearchConfig(beam_size=5, n_best=5, max_len_b=5)):
        assert all(BOS not in h.tokens for h in beams)
