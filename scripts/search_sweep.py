"""Choose the beam size and length penalty of a trained run on its validation split.

    python scripts/search_sweep.py RUN [--beams 1,5,10] [--alphas 0.6,1.0,1.4] [--split val]
                                       [--average 2,4,8 [--weights trained|model]]
                                       [--reverse-weights 0,0.5,1,2]

Decodes the split once per (beam, alpha) pair with the run's best checkpoint and prints a
table of sacreBLEU, chrF and mean output length, best first; the last stdout line is JSON
with the best pair. Greedy decoding (beam 1) has no length penalty, so it runs once.
`--average K,...` also tries the mean of the run's last K kept checkpoints
(`trainer.keep_checkpoints`; what `python -m s2s.average --last K` writes) for each K.
`--reverse-weights` also reranks each beam by the source's log-probability given each
candidate, for models trained with data.both_directions (`search.reverse_weight`, s2s/rerank.py).
Use the validation split for choosing; the test split is for the final report only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s2s.commands.average import average_weights, last_kept  # noqa: E402
from s2s.data.corpus import load_split  # noqa: E402
from s2s.decoding.translator import load_translator  # noqa: E402
from s2s.errors import user_errors_exit  # noqa: E402
from s2s.metrics import score  # noqa: E402


def numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

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
        for beam in numbers(args.beams, int):
            settings = (
                [(a, w) for a in numbers(args.alphas, float) for w in numbers(args.reverse_weights, float)]
                if beam > 1
                else [(1.0, 0.0)]
            )
            for alpha, reverse_weight in settings:
                translator.search.beam_size, translator.search.length_penalty, translator.search.n_best = beam, alpha, 1
                translator.search.reverse_weight = reverse_weight
                started = time.perf_counter()
                outputs = translator.translate_detailed(sources, max_input_tokens=None)
                seconds = time.perf_counter() - started
                metrics = score([o.text for o in outputs], references)
                length = sum(len(o.text.split()) for o in outputs) / max(len(outputs), 1)
                rows.append(
                    {
                        "weights": name,
                        "beam": beam,
                        "alpha": alpha,
                        "reverse_weight": reverse_weight,
                        "bleu": metrics["bleu"],
                        "chrf": metrics["chrf"],
                        "mean_words": round(length, 2),
                        "seconds": round(seconds, 1),
                    }
                )
                print(
                    f"{name:>8}  beam {beam:2d}  alpha {alpha:4.2f}  reverse {reverse_weight:4.2f}  BLEU {metrics['bleu']:6.2f}  chrF {metrics['chrf']:6.2f}  "
                    f"words/sentence {length:5.2f}  ({seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    rows.sort(key=lambda r: (-r["bleu"], -r["chrf"]))
    ref_words = sum(len(r.split()) for r in references) / max(len(references), 1)
    print(f"{run_dir}, split {split!r} ({len(sources)} sentences; references {ref_words:.2f} words/sentence)")
    print(
        f"{'weights':>8}  {'beam':>4}  {'alpha':>5}  {'reverse':>7}  {'BLEU':>6}  {'chrF':>6}  {'words':>6}  {'seconds':>7}"
    )
    for r in rows:
        print(
            f"{r['weights']:>8}  {r['beam']:>4}  {r['alpha']:>5.2f}  {r['reverse_weight']:>7.2f}  {r['bleu']:>6.2f}  {r['chrf']:>6.2f}  {r['mean_words']:>6.2f}  {r['seconds']:>7.1f}"
        )
    print(json.dumps({"split": split, "best": rows[0], "rows": rows}))


if __name__ == "__main__":
    with user_errors_exit():  # a bad run or split: one error line, exit status 2
        main()
