"""Figures for ensembles and constrained decoding on a corpus split (docs/performance.md, docs/results.md).

    python -m scripts.decoding_features --runs RUN_A RUN_B [--data-dir DIR] [--out FILE.json]
        [--parts ensemble,checkpoints,constraints,speed] [--beams 5,10] [--alphas 0.6,1.0,1.4] [--last 5]

- ensemble: each run alone and the ensemble of all (mean of probabilities), each with the beam
  size and length penalty best on the validation split, scored on the test split.
- checkpoints: the ensemble of the first run's last kept checkpoints (trainer.keep_checkpoints)
  against the average of the same checkpoints (what `python -m s2s.average` writes; both the
  trained weights and the moving-average weights the checkpoints translate with).
- constraints: test sentences decoded with one phrase of their reference as a constraint (1 to 3
  words, chosen at random with a fixed seed): the share of outputs that contain it and BLEU,
  against unconstrained beam search.
- speed: greedy and beam-5 decoding of one run against the ensemble of all, and beam 5 without
  and with the constraints, measured alternately on a machine with nothing else running.

Sentences per second count whole passes over the split, tokenization and detokenization included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time

import torch

import s2s
from s2s.checkpoint import save_atomic
from s2s.commands.average import average_weights, last_kept
from s2s.data.corpus import load_split
from s2s.decoding.loading import load_translator
from s2s.decoding.scoring import translate_and_score
from s2s.errors import user_errors_exit
from s2s.metrics import score


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.decoding_features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", nargs="+", required=True, help="run directories (the first is the reference)")
    parser.add_argument("--data-dir", default=None, help="the corpus folder, if not the runs' data.dir")
    parser.add_argument("--parts", default="ensemble,checkpoints,constraints,speed")
    parser.add_argument("--beams", default="5,10", help="beam sizes tried on validation")
    parser.add_argument("--alphas", default="0.6,1.0,1.4", help="length penalties tried on validation")
    parser.add_argument("--last", type=int, default=5, help="kept checkpoints in the checkpoint ensemble")
    parser.add_argument("--seed", type=int, default=1, help="seeds the choice of constraint phrases")
    parser.add_argument("--out", default=None, help="also write the figures here as JSON")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Corpus:
    def __init__(self, run: str, data_dir: str | None):
        _, cfg, _ = load_translator(run, device="cpu")
        if data_dir:
            cfg.data.dir = data_dir
        self.lang = cfg.data.tgt_lang
        self.splits = {}
        for split in (cfg.data.valid_split, cfg.data.test_split):
            data = load_split(cfg.data, split, cfg.seed)
            self.splits[split] = (list(data["src"]), list(data["tgt"]))
        self.valid, self.test = cfg.data.valid_split, cfg.data.test_split


def tuned(translator: s2s.Translator, corpus: Corpus, beams: list[int], alphas: list[float], name: str) -> dict:
    """The best (beam, alpha) on validation, and its test scores."""
    sources, references = corpus.splits[corpus.valid]
    best = None
    for beam in beams:
        for alpha in alphas:
            _, metrics = translate_and_score(
                translator, sources, references, progress_bar=False, beam_size=beam, length_penalty=alpha
            )
            log(f"{name}: val beam {beam} alpha {alpha}: BLEU {metrics['bleu']:.2f}")
            if best is None or metrics["bleu"] > best[0]:
                best = (metrics["bleu"], beam, alpha)
    val_bleu, beam, alpha = best
    sources, references = corpus.splits[corpus.test]
    _, metrics = translate_and_score(
        translator, sources, references, progress_bar=False, beam_size=beam, length_penalty=alpha
    )
    row = {"name": name, "beam": beam, "alpha": alpha, "val_bleu": val_bleu, "test_bleu": metrics["bleu"]}
    row["test_chrf"] = metrics["chrf"]
    log(f"{name}: {row}")
    return row


def decode_chunks(translator: s2s.Translator, sources: list[str], constraints=None, **options) -> list:
    """Translations of `sources` (with one constraint list per source, if given), 512 at a time, as
    translate_and_score decodes a split."""
    out = []
    for start in range(0, len(sources), 512):
        chunk = {"constraints": constraints[start : start + 512]} if constraints else {}
        out += translator.translate_detailed(sources[start : start + 512], max_input_tokens=None, **chunk, **options)
    return out


def speed(translator: s2s.Translator, sources: list[str], constraints=None, **options) -> float:
    decode_chunks(translator, sources[:64], constraints[:64] if constraints else None, **options)  # oneDNN warm-up
    started = time.perf_counter()
    decode_chunks(translator, sources, constraints, **options)
    return len(sources) / (time.perf_counter() - started)


def ensemble_part(args: argparse.Namespace, corpus: Corpus, beams: list[int], alphas: list[float]) -> dict:
    rows = [tuned(s2s.load(run, device="cpu"), corpus, beams, alphas, run) for run in args.runs]
    ensemble = s2s.load(args.runs, device="cpu")
    rows.append(tuned(ensemble, corpus, beams, alphas, "ensemble"))
    return {"rows": rows}


def speed_part(args: argparse.Namespace, corpus: Corpus, rounds: int = 2) -> dict:
    """Sentences/s on the test split: one model against the ensemble of all runs (greedy, beam 5),
    and beam 5 without and with one reference phrase per sentence as a constraint; the
    measurements alternate, `rounds` times, and the best of each is kept."""
    single, ensemble = s2s.load(args.runs[0], device="cpu"), s2s.load(args.runs, device="cpu")
    sources = corpus.splits[corpus.test][0]
    wanted = [[p] if p else [] for p in phrases_for(corpus, args.seed)]
    cases = {
        "greedy_single": (single, {"beam_size": 1}),
        "greedy_ensemble": (ensemble, {"beam_size": 1}),
        "beam5_single": (single, {"beam_size": 5}),
        "beam5_ensemble": (ensemble, {"beam_size": 5}),
        "beam5_constrained": (single, {"beam_size": 5, "constraints": wanted}),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (translator, options) in cases.items():
            best[name] = max(best.get(name, 0.0), speed(translator, sources, **options))
            log(f"speed {name}: {best[name]:.1f} sent/s")
    return {name: round(value, 1) for name, value in best.items()}


def phrases_for(corpus: Corpus, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    return [reference_phrase(r, rng) for r in corpus.splits[corpus.test][1]]


def checkpoints_part(args: argparse.Namespace, corpus: Corpus, beam: int, alpha: float) -> dict:
    paths = last_kept(args.runs[0], args.last)
    sources, references = corpus.splits[corpus.test]
    out = {"checkpoints": paths, "beam": beam, "alpha": alpha}

    def test_bleu(translator: s2s.Translator) -> float:
        return translate_and_score(
            translator, sources, references, progress_bar=False, beam_size=beam, length_penalty=alpha
        )[1]["bleu"]

    out["ensemble"] = test_bleu(s2s.load(paths, device="cpu"))
    out["last"] = test_bleu(s2s.load(paths[-1], device="cpu"))
    for which in ("trained", "model"):
        weights, state = average_weights(paths, which)
        state = {**state, "model": weights}
        state.pop("trained_model", None)
        # beside the run's checkpoints, where a checkpoint file finds its run's tokenizers; removed after
        path = os.path.join(os.path.dirname(paths[-1]), f"features-average-{which}.pt")
        save_atomic(state, path)
        try:
            out[f"average_{which}"] = test_bleu(s2s.load(path, device="cpu"))
        finally:
            os.remove(path)
    log(f"checkpoints: {out}")
    return out


def reference_phrase(reference: str, rng: random.Random) -> str | None:
    """1 to 3 consecutive words of the reference, without their outer punctuation."""
    words = [w.strip(".,;:!?\"'()") for w in reference.split()]
    words = [w for w in words if w]
    if not words:
        return None
    length = min(len(words), rng.randint(1, 3))
    start = rng.randrange(len(words) - length + 1)
    return " ".join(words[start : start + length])


def contains(hypothesis: str, phrase: str) -> bool:
    """The phrase starts at a word boundary of the hypothesis (as a constraint is placed)."""
    return re.search(r"(?<!\S)" + re.escape(phrase), hypothesis) is not None


def constraints_part(args: argparse.Namespace, corpus: Corpus, beam: int, alpha: float) -> dict:
    translator = s2s.load(args.runs[0], device="cpu")
    sources, references = corpus.splits[corpus.test]
    phrases = phrases_for(corpus, args.seed)
    wanted = [[p] if p else [] for p in phrases]
    options = {"beam_size": beam, "length_penalty": alpha}
    plain = translator.translate(sources, max_input_tokens=None, **options)
    constrained = decode_chunks(translator, sources, wanted, **options)
    texts = [t.text for t in constrained]
    asked = [i for i, p in enumerate(phrases) if p]
    out = {
        "beam": beam,
        "alpha": alpha,
        "sentences": len(sources),
        "with_phrase": len(asked),
        "met_in_text": sum(contains(texts[i], phrases[i]) for i in asked) / len(asked),
        "in_plain_output": sum(contains(plain[i], phrases[i]) for i in asked) / len(asked),
        "reported_unmet": sum(bool(t.unmet_constraints) for t in constrained),
        "bleu_plain": score(plain, references, moses_lang=corpus.lang)["bleu"],
        "bleu_constrained": score(texts, references, moses_lang=corpus.lang)["bleu"],
    }
    log(f"constraints: {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    parts = set(args.parts.split(","))
    beams = [int(b) for b in args.beams.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    corpus = Corpus(args.runs[0], args.data_dir)
    figures: dict = {"runs": args.runs, "torch_threads": torch.get_num_threads()}
    beam, alpha = beams[0], alphas[len(alphas) // 2]
    if "ensemble" in parts:
        figures["ensemble"] = ensemble_part(args, corpus, beams, alphas)
        first = figures["ensemble"]["rows"][0]
        beam, alpha = first["beam"], first["alpha"]
    if "checkpoints" in parts:
        figures["checkpoints"] = checkpoints_part(args, corpus, beam, alpha)
    if "constraints" in parts:
        figures["constraints"] = constraints_part(args, corpus, beam, alpha)
    if "speed" in parts:
        figures["speed_sent_per_s"] = speed_part(args, corpus)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    with user_errors_exit():
        main()
