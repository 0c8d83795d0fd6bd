"""`python -m scripts.search_sweep` scores a split as `python -m s2s.evaluate` does (s2s.decoding.scoring)."""

from __future__ import annotations

import datetime
import json
import os
import random

import pytest
import torch

from s2s.commands.train import run
from s2s.data.corpus import load_split
from s2s.decoding.loading import load_translator
from s2s.decoding.scoring import translate_and_score
from s2s.metrics import score
from tests.conftest import ROOT, TINY, make_config, run_cli

MONTHS = "January February March April May June July August September October November December".split()
SPLITS = {"train": 400, "valid": 24, "test": 24}


def write_month_corpus(directory: str, seed: int = 0) -> None:
    """ISO dates -> their month ('1989-11-09' -> 'November'): capitalised references, in SPLIT.iso / SPLIT.en."""
    rng = random.Random(seed)
    days = [
        datetime.date(1900, 1, 1) + datetime.timedelta(days=n) for n in rng.sample(range(70000), sum(SPLITS.values()))
    ]
    start = 0
    for split, count in SPLITS.items():
        chosen = days[start : start + count]
        start += count
        with open(os.path.join(directory, f"{split}.iso"), "w", encoding="utf-8") as file:
            file.writelines(f"{d.isoformat()}\n" for d in chosen)
        with open(os.path.join(directory, f"{split}.en"), "w", encoding="utf-8") as file:
            file.writelines(f"{MONTHS[d.month - 1]}\n" for d in chosen)


@pytest.fixture(scope="module")
def lowercased_run(tmp_path_factory) -> str:
    """A tiny run trained with data.lowercase=true on the month corpus."""
    torch.set_num_threads(1)
    corpus = tmp_path_factory.mktemp("months")
    write_month_corpus(str(corpus))
    run_dir = str(corpus / "run")
    overrides = [a for a in TINY if not a.startswith(("data.generated_", "trainer.max_steps="))]
    cfg = make_config(
        *overrides,
        "data.name=months",
        "data.format=text",
        f"data.dir={corpus}",
        "data.src_lang=iso",
        "data.tgt_lang=en",
        "data.lowercase=true",
        "trainer.max_steps=60",
    )
    run(cfg, run_dir)
    return run_dir


@pytest.mark.slow
def test_sweep_scores_greedy_like_evaluate_on_a_lowercased_run(lowercased_run):
    translator, cfg, _ = load_translator(lowercased_run, "best", "cpu")
    sources = list(load_split(cfg.data, "valid", cfg.seed)["src"])
    with open(os.path.join(cfg.data.dir, "valid.en"), encoding="utf-8") as file:
        cased = file.read().splitlines()
    hypotheses, expected = translate_and_score(translator, sources, cased, progress_bar=False, beam_size=1)
    assert score(hypotheses, cased)["chrf"] != expected["chrf"]  # casing matters here: the check below can fail

    result = run_cli(
        "scripts.search_sweep", [lowercased_run, "--beams", "1", "--split", "valid", "--device", "cpu"], cwd=ROOT
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    (greedy,) = json.loads(result.stdout.decode().splitlines()[-1])["rows"]
    assert (greedy["bleu"], greedy["chrf"]) == (expected["bleu"], expected["chrf"])
    evaluated = run_cli(
        "s2s.evaluate", [f"run={lowercased_run}", "split=valid", "device=cpu", "search.beam_size=1"], cwd=ROOT
    )
    assert evaluated.returncode == 0, evaluated.stderr.decode()[-3000:]
    reported = json.loads(evaluated.stdout.decode().splitlines()[-1])
    assert (greedy["bleu"], greedy["chrf"]) == (reported["bleu"], reported["chrf"])
    words = sum(len(h.split()) for h in hypotheses) / len(hypotheses)
    assert greedy["mean_words"] == round(words, 2)
