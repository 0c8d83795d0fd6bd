"""Choose the beam size and length penalty of a trained run on its validation split.

    python -m scripts.search_sweep RUN [--beams 1,5,10] [--alphas 0.6,1.0,1.4] [--split val]
                                       [--average 2,4,8 [--weights trained|model]]
                                       [--reverse-weights 0,0.5,1,2]

Decodes the split once per (beam, alpha) pair with the run's best checkpoint and prints a
table of sacreBLEU, chrF and mean output length, best first; the last stdout line is JSON
with the best pair. Greedy decoding (beam 1) has no length penalty, so it runs once.
Each pair is scored as `python -m s2s.evaluate` scores a split (s2s.decoding.scoring):
whole sentences, and the references lowercased for a run trained with data.lowercase=true.
`--average K,...` also tries the mean of the run's last K kept checkpoints
(`trainer.keep_checkpoints`; what `python -m s2s.average last=K` writes) for each K.
`--reverse-weights` also reranks each beam by the source's log-probability given each
candidate, for models trained with data.both_directions (`search.reverse_weight`, s2s/decoding/rerank.py).
Use the validation split for choosing; the test split is for the final report only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from s2s.commands.average import average_weights, last_kept
from s2s.data.corpus import load_split
from s2s.decoding.loading import load_translator
from s2s.decoding.scoring import translate_and_score
from s2s.decoding.translator import Translator
from s2s.errors import user_errors_exit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.search_sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="training run directory or checkpoint")
    parser.add_argument("--beams", default="1,5,10", help="beam sizes, comma-separated")
    parser.add_argument("--alphas", default="0.6,1.0,1.4", help="GNMT length penalties, comma-separated")
    parser.add_argument("--split", default=None, help="corpus split (default: the run's data.valid_split)")
    parser.add_argument("--data-dir", default=None, help="read the corpus from here instead of the run's data.dir")
    parser.add_argument("--checkpoint", default="best", help="best | last | averaged | step-N")
    parser.add_argument(
        "--average", default="", help="also the mean of the last K kept checkpoints, for each K (comma-separated)"
    )
    parser.add_argument(
        "--weights",
        default="trained",
        choices=["trained", "model"],
        help="which weights of the kept checkpoints to average",
    )
    parser.add_argument(
        "--reverse-weights",
        default="0",
        help="search.reverse_weight values for beams > 1, comma-separated (data.both_directions models)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser.parse_args(argv)


def numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def settings(args: argparse.Namespace) -> list[tuple[int, float, float]]:
    """(beam, alpha, reverse weight) to decode with; greedy once, without length penalty or reranking."""
    chosen = []
    for beam in numbers(args.beams, int):
        if beam > 1:
            alphas, reverse_weights = numbers(args.alphas, float), numbers(args.reverse_weights, float)
            chosen += [(beam, alpha, weight) for alpha in alphas for weight in reverse_weights]
        else:
            chosen.append((beam, 1.0, 0.0))
    return chosen


def sweep_row(
    translator: Translator, sources: list[str], references: list[str], name: str, setting: tuple[int, float, float]
) -> dict:
    """Decode and score the split with one setting; prints a progress line to stderr."""
    beam, alpha, reverse_weight = setting
    started = time.perf_counter()
    hypotheses, metrics = translate_and_score(
        translator,
        sources,
        references,
        description=f"{name} beam {beam} alpha {alpha}",
        beam_size=beam,
        length_penalty=alpha,
        n_best=1,
        reverse_weight=reverse_weight,
    )
    seconds = time.perf_counter() - started
    words = sum(len(h.split()) for h in hypotheses) / max(len(hypotheses), 1)
    print(
        f"{name:>8}  beam {beam:2d}  alpha {alpha:4.2f}  reverse {reverse_weight:4.2f}  "
        f"BLEU {metrics['bleu']:6.2f}  chrF {metrics['chrf']:6.2f}  words/sentence {words:5.2f}  ({seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    return {
        "weights": name,
        "beam": beam,
        "alpha": alpha,
        "reverse_weight": reverse_weight,
        "bleu": metrics["bleu"],
        "chrf": metrics["chrf"],
        "mean_words": round(words, 2),
        "seconds": round(seconds, 1),
    }


def print_table(rows: list[dict], title: str) -> None:
    print(title)
    print(
        f"{'weights':>8}  {'beam':>4}  {'alpha':>5}  {'reverse':>7}  {'BLEU':>6}  {'chrF':>6}  "
        f"{'words':>6}  {'seconds':>7}"
    )
    for r in rows:
        print(
            f"{r['weights']:>8}  {r['beam']:>4}  {r['alpha']:>5.2f}  {r['reverse_weight']:>7.2f}  "
            f"{r['bleu']:>6.2f}  {r['chrf']:>6.2f}  {r['mean_words']:>6.2f}  {r['seconds']:>7.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    translator, cfg, run_dir = load_translator(args.run, args.checkpoint, args.device)
    if args.data_dir:
        cfg.data.dir = args.data_dir
    split = args.split or cfg.data.valid_split
    data = load_split(cfg.data, split, cfg.seed)
    sources, references = list(data["src"]), list(data["tgt"])
    averages = [last_kept(run_dir, k) for k in numbers(args.average, int)]
    weights = [(args.checkpoint, None)] + [(f"avg{len(paths)}", paths) for paths in averages]
    rows = []
    for name, paths in weights:
        if paths is not None:
            translator.model.load_state_dict(average_weights(paths, args.weights)[0])
        rows += [sweep_row(translator, sources, references, name, setting) for setting in settings(args)]
    rows.sort(key=lambda r: (-r["bleu"], -r["chrf"]))
    ref_words = sum(len(r.split()) for r in references) / max(len(references), 1)
    title = f"{run_dir}, split {split!r} ({len(sources)} sentences; references {ref_words:.2f} words/sentence)"
    print_table(rows, title)
    print(json.dumps({"split": split, "best": rows[0], "rows": rows}))


if __name__ == "__main__":
    with user_errors_exit():  # a bad run or split: one error line, exit status 2
        main()
