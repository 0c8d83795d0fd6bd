"""The public Python API, used only through `import s2s`: train, load, translate, evaluate."""

from __future__ import annotations

import importlib
import json
import os
import random
import threading

import pytest
import torch

import s2s
from s2s.precision import bf16_runs

# a word-for-word language pair: a tiny model learns it exactly in a few hundred updates
LEXICON = {
    "der": "the",
    "Hund": "dog",
    "Katze": "cat",
    "läuft": "runs",
    "schläft": "sleeps",
    "rot": "red",
    "groß": "big",
    "klein": "small",
}
TRAIN = [
    "data=files",
    "data.src_lang=de",
    "data.tgt_lang=en",
    "data.subword.vocab_size=40",
    "data.max_tokens=400",
    "model.embedding_size=24",
    "model.encoder.hidden_size=24",
    "model.decoder.hidden_size=48",
    "model.embedding_dropout=0",
    "model.encoder.dropout=0",
    "model.decoder.dropout=0",
    "optim.lr=0.01",
    "optim.label_smoothing=0",
    "trainer.max_steps=500",
    "trainer.valid_every=250",
    "trainer.valid_each_epoch=false",
    "trainer.tensorboard=false",
    "threads=1",
]
GERMAN = ["der Hund läuft", "Katze schläft klein", "rot groß Katze"]
ENGLISH = ["the dog runs", "cat sleeps small", "red big cat"]


def _write_corpus(directory) -> None:
    rng = random.Random(0)
    pairs = []
    for _ in range(300):
        words = [rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 4))]
        pairs.append((" ".join(words), " ".join(LEXICON[w] for w in words)))
    for split, rows in (("train", pairs), ("valid", pairs[:8]), ("test", pairs[8:16])):
        (directory / f"{split}.de").write_text("".join(de + "\n" for de, _ in rows), encoding="utf-8")
        (directory / f"{split}.en").write_text("".join(en + "\n" for _, en in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    torch.set_num_threads(1)
    corpus = tmp_path_factory.mktemp("corpus")
    _write_corpus(corpus)
    target = str(tmp_path_factory.mktemp("api") / "run")
    returned = s2s.train([*TRAIN, f"data.dir={corpus}", f"hydra.run.dir={target}"])
    assert returned == target
    return target


@pytest.fixture(scope="module")
def translator(run_dir) -> s2s.Translator:
    return s2s.load(run_dir, device="cpu")


@pytest.mark.slow
def test_train_writes_a_run_with_its_log_and_checkpoints(run_dir):
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "best.pt"))
    with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as log:
        assert "validation at step 500" in log.read()
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as file:
        assert json.load(file)["best"]["exact_match"] == 100.0


@pytest.mark.slow
def test_translate_returns_one_string_per_sentence_in_order(translator):
    assert translator.translate(GERMAN + ["", "   "]) == ENGLISH + ["", ""]
    assert translator.translate(list(reversed(GERMAN))) == list(reversed(ENGLISH))
    assert translator.translate([]) == []
    assert translator.translate(GERMAN, beam_size=4, length_penalty=0.5) == ENGLISH


@pytest.mark.slow
def test_translate_is_translate_detailed_text_and_beam_one_is_greedy(translator):
    detailed = translator.translate_detailed(GERMAN, beam_size=1)
    assert [t.text for t in detailed] == translator.translate(GERMAN)
    greedy_scores = [t.n_best[0][1] for t in detailed]
    sampled_cold = translator.translate_detailed(GERMAN, sampling=True, top_k=1, seed=3)
    assert [t.text for t in sampled_cold] == ENGLISH
    assert [t.n_best[0][1] for t in sampled_cold] == pytest.approx(greedy_scores, abs=1e-5)


@pytest.mark.slow
def test_detailed_translations_have_n_best_scores_attention_and_truncation(translator):
    result = translator.translate_detailed(["der Hund läuft"], beam_size=4, n_best=3, attention=True)[0]
    assert isinstance(result, s2s.Translation)
    assert result.text == "the dog runs" == result.n_best[0][0] and len(result.n_best) == 3
    scores = [score for _, score in result.n_best]
    assert scores == sorted(scores, reverse=True)
    assert isinstance(result.attention, s2s.Alignment)
    assert result.attention.weights.shape == (len(result.attention.target), len(result.attention.source))
    assert torch.allclose(result.attention.weights.sum(dim=1), torch.ones(len(result.attention.target)), atol=1e-4)
    cut = translator.translate_detailed(["der Hund läuft rot groß Katze"], max_input_tokens=2, long_lines="truncate")[0]
    assert cut.truncated and cut.src_length > 2 and len(cut.src_pieces) == 2
    whole = translator.translate_detailed(["der Hund läuft rot groß Katze"], max_input_tokens=2)[0]
    assert not whole.truncated and len(whole.src_pieces) == whole.src_length


@pytest.mark.slow
def test_options_apply_to_one_call_only(translator):
    before = translator.search
    translator.translate(GERMAN, beam_size=3, n_best=2, max_len_b=1)
    assert translator.search == before
    assert translator.translate(GERMAN) == ENGLISH


@pytest.mark.slow
def test_the_translator_knows_its_config_and_languages(translator):
    assert isinstance(translator.config, s2s.Config)
    assert (translator.source_lang, translator.target_lang) == ("de", "en")
    assert translator.config.model.embedding_size == 24


@pytest.mark.slow
@pytest.mark.parametrize(
    "options, message",
    [
        ({"beam": 3}, "unknown decoding option 'beam'; did you mean 'beam_size'?"),
        ({"beam_size": "3"}, "decoding option beam_size must be int, got '3'"),
        ({"beam_size": True}, "decoding option beam_size must be int"),
        ({"length_penalty": None}, "decoding option length_penalty must be float"),
        ({"precision": "bf16"}, "precision is chosen when the model is loaded"),
        ({"long_lines": "wrap"}, "long_lines must be 'split' or 'truncate'"),
        ({"beam_size": 0}, "beam_size must be at least 1"),
        ({"beam_size": 2, "n_best": 3}, "must not exceed"),
        ({"max_input_tokens": 0}, "max_input_tokens must be at least 1"),
    ],
)
def test_bad_options_are_rejected_with_one_clear_message(translator, options, message):
    with pytest.raises(s2s.S2SError, match=message.replace("(", r"\(").replace("?", r"\?")):
        translator.translate(["der Hund"], **options)


@pytest.mark.slow
def test_a_string_instead_of_a_list_is_rejected(translator):
    with pytest.raises(s2s.S2SError, match=r"a list of sentences, not one string"):
        translator.translate("der Hund")  # type: ignore[arg-type]
    with pytest.raises(s2s.S2SError, match="list of str"):
        translator.translate([1])  # type: ignore[list-item]


@pytest.mark.slow
def test_a_translator_shared_between_threads_gives_the_serial_results(translator):
    inputs = [GERMAN[i % 3] for i in range(24)]
    serial = translator.translate(inputs, beam_size=3)
    results: dict[int, list[str]] = {}

    def work(k: int) -> None:
        results[k] = translator.translate(inputs, beam_size=3 if k % 2 else 1)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(results[k] == serial for k in results) and len(results) == 4


@pytest.mark.slow
def test_load_takes_a_checkpoint_file_and_refuses_a_missing_path(run_dir, tmp_path):
    from_file = s2s.load(os.path.join(run_dir, "checkpoints", "last.pt"), device="cpu")
    assert from_file.translate(GERMAN) == ENGLISH
    with pytest.raises(s2s.S2SError):
        s2s.load(str(tmp_path / "nowhere"))
    with pytest.raises(s2s.S2SError, match="path"):
        s2s.load(42)  # type: ignore[arg-type]
    with pytest.raises(s2s.S2SError, match="or a list of them"):
        s2s.load([])


@pytest.mark.slow
def test_evaluate_returns_metrics_with_signatures(run_dir, tmp_path):
    metrics = s2s.evaluate(run_dir, device="cpu")
    assert metrics["exact_match"] == 100.0 and metrics["bleu"] == 100.0
    beam = s2s.evaluate(run_dir, device="cpu", beam_size=3)
    ensemble = s2s.evaluate([run_dir, run_dir], device="cpu", beam_size=3, combine="log_probs")
    assert ensemble == beam  # an ensemble of one model twice scores as the model
    translator = s2s.load(run_dir, device="cpu")
    folder = translator.config.data.dir
    sources = open(os.path.join(folder, "test.de"), encoding="utf-8").read().splitlines()
    references = open(os.path.join(folder, "test.en"), encoding="utf-8").read().splitlines()
    hypotheses = translator.translate(sources, beam_size=3)
    assert beam["exact_match"] == round(100 * sum(h == r for h, r in zip(hypotheses, references)) / len(references), 2)
    assert (
        metrics["bleu_signature"].startswith("nrefs:1|") and "chrf_signature" in metrics and "bleu_lc_moses" in metrics
    )
    (tmp_path / "hyp").write_text("the dog runs\ncat\n", encoding="utf-8")
    (tmp_path / "ref").write_text("the dog runs\ncat sleeps\n", encoding="utf-8")
    files = s2s.evaluate(hypotheses=str(tmp_path / "hyp"), references=str(tmp_path / "ref"))
    assert files["exact_match"] == 50.0
    with pytest.raises(s2s.S2SError, match="did you mean 'beam_size'"):
        s2s.evaluate(run_dir, beam=3)
    with pytest.raises(s2s.S2SError, match="search options only"):
        s2s.evaluate(run_dir, seed=1)


@pytest.mark.slow
def test_train_composes_a_users_config_dir_on_top_of_the_packaged_configs(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nmodel:\n  embedding_size: 12\ntrainer:\n  max_steps: 2\n", encoding="utf-8"
    )
    small = [
        "data.generated_train_size=60",
        "data.generated_valid_size=4",
        "data.generated_test_size=4",
        "trainer.valid_every=2",
        "trainer.tensorboard=false",
        "threads=1",
    ]
    run = s2s.train(["experiment=mine", *small, f"hydra.run.dir={tmp_path / 'run'}"], config_dir=str(tmp_path / "conf"))
    assert s2s.load(run, device="cpu").config.model.embedding_size == 12
    with pytest.raises(s2s.S2SError, match="unknown experiment config 'mien'.*did you mean 'mine'"):
        s2s.train(["experiment=mien"], config_dir=str(tmp_path / "conf"))
    with pytest.raises(s2s.S2SError, match="unknown config key 'model.embeding_size'"):
        s2s.train(["model.embeding_size=3"])


def test_the_decoding_options_cover_every_search_setting_but_precision():
    import dataclasses

    from s2s.config import SearchConfig

    search = {f.name for f in dataclasses.fields(SearchConfig)} - {"precision"}
    assert search <= set(s2s.DecodingOptions.__annotations__)
    assert set(s2s.DecodingOptions.__annotations__) - search == {"max_input_tokens", "long_lines", "seed"}


def test_a_string_of_overrides_is_refused():
    with pytest.raises(s2s.S2SError, match="list of override strings"):
        s2s.train("trainer.max_steps=3")  # type: ignore[arg-type]


def test_the_api_functions_survive_importing_the_command_modules():
    for name in ("train", "translate", "evaluate", "average"):
        importlib.import_module(f"s2s.commands.{name}")
    assert callable(s2s.train) and callable(s2s.evaluate) and s2s.train.__module__ == "s2s.api"
    assert s2s.__version__ == "0.2.0"


# ---------------------------------------------------------------- scoring, ensembles, constraints, top-p


@pytest.mark.slow
def test_the_score_of_the_greedy_output_is_its_greedy_score(translator):
    greedy = translator.translate_detailed(GERMAN, beam_size=1)
    scored = translator.score(GERMAN, [t.text for t in greedy])
    assert [s.score for s in scored] == pytest.approx([t.n_best[0][1] for t in greedy], abs=1e-4)
    for result, translation in zip(scored, greedy):
        assert isinstance(result, s2s.Score)
        assert result.pieces == translation.tgt_pieces + ["</s>"]
        assert len(result.token_scores) == len(result.pieces)
        assert sum(result.token_scores) == pytest.approx(result.score, abs=1e-5)
        assert result.per_token == pytest.approx(result.score / len(result.pieces))
    wrong, eos_only = translator.score(["der Hund läuft"] * 2, ["red big cat", ""])
    assert wrong.score < scored[0].score and eos_only.pieces == ["</s>"]
    with pytest.raises(s2s.S2SError, match="2 sources but 1 targets"):
        translator.score(GERMAN[:2], ENGLISH[:1])


@pytest.mark.slow
@pytest.mark.parametrize("combine", ["probs", "log_probs"])
def test_an_ensemble_of_a_run_with_itself_translates_and_scores_as_the_run(run_dir, translator, combine):
    ensemble = s2s.load([run_dir, run_dir], device="cpu", combine=combine)
    single = translator.translate_detailed(GERMAN, beam_size=3, n_best=3)
    double = ensemble.translate_detailed(GERMAN, beam_size=3, n_best=3)
    assert [t.text for t in double] == ENGLISH
    for one, two in zip(single, double):
        assert [text for text, _ in two.n_best] == [text for text, _ in one.n_best]
        assert [score for _, score in two.n_best] == pytest.approx([score for _, score in one.n_best], abs=1e-5)
    assert [s.score for s in ensemble.score(GERMAN, ENGLISH)] == pytest.approx(
        [s.score for s in translator.score(GERMAN, ENGLISH)], abs=1e-5
    )
    with pytest.raises(s2s.S2SError, match="combine must be probs or log_probs"):
        s2s.load([run_dir, run_dir], device="cpu", combine="max")
    int8 = s2s.load([run_dir, run_dir], device="cpu", precision="int8", combine=combine)
    assert int8.translate(GERMAN, beam_size=3) == ENGLISH


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8", "bf16"])
def test_constraints_appear_the_prefix_is_kept_and_avoided_words_never_appear(run_dir, precision):
    if precision == "bf16" and not bf16_runs(torch.device("cpu")):
        pytest.skip("no bf16 kernels on this CPU")
    translator = s2s.load(run_dir, device="cpu", precision=precision)
    lines = ["der Hund läuft", "Katze schläft klein", "rot groß Katze", "der Hund schläft"]
    constraints = [["cat"], [], ["small dog"], []]
    prefix = [None, "small", None, "the big"]
    avoid = [[], ["cat"], [], ["dog", "sleeps"]]
    results = translator.translate_detailed(lines, constraints=constraints, prefix=prefix, avoid=avoid, beam_size=4)
    texts = [r.text for r in results]
    assert "cat" in texts[0].split() and "small dog" in texts[2]
    assert texts[1].startswith("small") and "cat" not in texts[1].split()
    assert texts[3].startswith("the big") and not {"dog", "sleeps"} & set(texts[3].split())
    assert all(r.unmet_constraints == [] for r in results)
    alone = [
        translator.translate_detailed([line], constraints=[c], prefix=[p], avoid=[a], beam_size=4)[0].text
        for line, c, p, a in zip(lines, constraints, prefix, avoid)
    ]
    assert alone == texts
    # a greedy search (beam 1) meets them too
    assert "cat" in translator.translate_detailed(lines[:1], constraints=constraints[:1])[0].text.split()


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"constraints": [["cat"]]}, "constraints has 1 entries for 3 sentences"),
        ({"avoid": "cat"}, "avoid must be a list with one entry per sentence"),
        ({"constraints": [["cat"], [""], []]}, "constraints of sentence 2 holds an empty phrase"),
        ({"constraints": [["cat"], [], []], "avoid": [["cat"], [], []]}, "'cat' is both avoided and required"),
        ({"prefix": [None, 3, None]}, "prefix of sentence 2 must be text"),
        ({"constraints": [["cat"], [], []], "sampling": True}, "need search, not sampling"),
    ],
)
def test_bad_constraints_are_refused_with_one_clear_message(translator, arguments, message):
    with pytest.raises(s2s.S2SError, match=message):
        translator.translate_detailed(GERMAN, **arguments)


@pytest.mark.slow
def test_top_p_near_zero_samples_the_greedy_output_and_a_seed_repeats_a_sample(translator):
    greedy = translator.translate_detailed(GERMAN)
    nucleus = translator.translate_detailed(GERMAN, sampling=True, top_p=1e-6, temperature=2.0, seed=4)
    assert [t.text for t in nucleus] == [t.text for t in greedy]
    assert [t.n_best[0][1] for t in nucleus] == pytest.approx([t.n_best[0][1] for t in greedy], abs=1e-5)
    first = translator.translate(GERMAN * 4, sampling=True, top_p=0.9, temperature=3.0, seed=7)
    assert first == translator.translate(GERMAN * 4, sampling=True, top_p=0.9, temperature=3.0, seed=7)
    with pytest.raises(s2s.S2SError, match="top_p must be in"):
        translator.translate(GERMAN, sampling=True, top_p=0.0)


@pytest.mark.slow
def test_a_constrained_line_is_translated_whole_or_truncated(translator):
    line = "der Hund läuft rot groß Katze"
    whole = translator.translate_detailed([line], max_input_tokens=2, constraints=[["cat"]])[0]
    assert not whole.truncated and len(whole.src_pieces) == whole.src_length > 2 and "cat" in whole.text.split()
    cut = translator.translate_detailed([line], max_input_tokens=2, long_lines="truncate", constraints=[["cat"]])[0]
    assert cut.truncated and len(cut.src_pieces) == 2 and "cat" in cut.text.split()
