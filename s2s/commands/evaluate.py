"""`python -m s2s.evaluate [model=PATH] [split=NAME]` or `python -m s2s.evaluate hyp=FILE ref=FILE`

Translates a split of the run's corpus (default: its test split) and scores it with
sacrebleu, or scores existing hypothesis and reference files. Prints BLEU and chrF
with their signatures; the last line of stdout is one JSON object of the metrics.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from s2s.arguments import parse_overrides
from s2s.config import Config
from s2s.data.corpus import load_split
from s2s.decoding.loading import load_translator
from s2s.decoding.scoring import translate_and_score
from s2s.decoding.translator import Translator
from s2s.errors import S2SError, user_errors_exit
from s2s.metrics import score

USAGE = (
    __doc__
    + """
Options (key=value):
  model=PATH         a run directory, checkpoint or model file (run=PATH is the same; default: the
                     latest run under outputs/); a model file reads the corpus its card names, or data_dir
  checkpoint=best    best | last | averaged (python -m s2s.average) | step-N (trainer.keep_checkpoints)
  split=NAME         corpus split to translate (default: the run's data.test_split)
  data_dir=PATH      read the corpus from here instead of the run's data.dir
  hyp=FILE ref=FILE  score these files instead of translating (one sentence per line)
  output=FILE        also write the hypotheses here
  device=auto        auto | cpu | cuda | cuda:N
  reverse=true       translate and score the other direction (a model trained with data.both_directions)
  lang=xx            also BLEU on lowercased, Moses-tokenized text with xx's rules
                     (default: the run's target language; with hyp/ref files: off)
  search.KEY=VALUE   decoding options, as for s2s.translate
"""
)


@dataclass
class EvaluateOptions:
    model: list[str] = field(default_factory=list)  # run directory, checkpoint or model file; several: an ensemble
    combine: str = "probs"  # an ensemble: mean of probabilities (probs) or of log-probabilities (log_probs)
    checkpoint: str = "best"  # best | last | averaged | step-N
    split: str | None = None  # default: the run's data.test_split
    data_dir: str | None = None  # default: the run's data.dir
    hyp: str | None = None  # hypotheses file (with ref=): score without a model
    ref: str | None = None  # references file
    output: str | None = None  # write the hypotheses here
    device: str = "auto"
    lang: str | None = None  # target language for Moses-tokenized BLEU (default: the run's data.tgt_lang; files: none)
    reverse: bool = False  # the other direction, tgt_lang -> src_lang (a model trained with data.both_directions)


def read_lines(path: str) -> list[str]:
    """Lines of a UTF-8 file, split on '\\n' only (the same rule translate uses)."""
    try:
        with open(path, encoding="utf-8", newline="") as file:
            lines = [line.rstrip("\r") for line in file.read().split("\n")]
    except FileNotFoundError:
        raise S2SError(f"file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise S2SError(f"{path} is not valid UTF-8 (byte {error.start})") from None
    return lines[:-1] if lines and lines[-1] == "" else lines


def translate_split(options: EvaluateOptions, search: list[str]) -> tuple[list[str], dict, str]:
    """Translate the run's split and score it: (hypotheses, metrics, what was scored)."""
    translator, cfg, run_dir = load_translator(
        options.model, options.checkpoint, options.device, search, options.reverse, options.combine
    )
    if options.data_dir is not None:
        cfg.data.dir = options.data_dir
    split = options.split or cfg.data.test_split
    hypotheses, metrics, count = score_split(translator, cfg, split, options.lang)
    return hypotheses, metrics, f"{run_dir} split {split!r} ({count} sentences)"


def score_split(
    translator: Translator, cfg: Config, split: str, lang: str | None = None
) -> tuple[list[str], dict, int]:
    """(hypotheses, metrics, sentences) of a split of cfg.data, translated whole; Moses-tokenized BLEU
    in `lang`, by default the target language (none for the dates task)."""
    dataset = load_split(cfg.data, split, cfg.seed)
    sources, references = list(dataset["src"]), list(dataset["tgt"])
    if not references:
        raise S2SError(f"nothing to score in split {split!r}")
    language = lang or (cfg.data.tgt_lang if cfg.data.format.value != "dates" else None)
    hypotheses, metrics = translate_and_score(
        translator, sources, references, moses_lang=language, description=f"translate {split}"
    )
    return hypotheses, metrics, len(sources)


def evaluate(options: EvaluateOptions, search: list[str]) -> dict:
    """Score as the command does and print the report; returns the metrics."""
    metrics, what = compute_metrics(options, search)
    print_report(metrics, what)
    return metrics


def compute_metrics(options: EvaluateOptions, search: list[str]) -> tuple[dict, str]:
    """The metrics (with their sacreBLEU signatures) and a description of what was scored."""
    if (options.hyp is None) != (options.ref is None):
        raise S2SError("give both hyp=FILE and ref=FILE, or neither")
    if options.hyp is not None:
        hypotheses, references = read_lines(options.hyp), read_lines(options.ref)
        what = f"{options.hyp} against {options.ref}"
        if len(hypotheses) != len(references):
            raise S2SError(f"{options.hyp} has {len(hypotheses)} lines but {options.ref} has {len(references)}")
        if not references:
            raise S2SError(f"nothing to score in {what}")
        metrics = score(hypotheses, references, moses_lang=options.lang)
    else:
        hypotheses, metrics, what = translate_split(options, search)
    if options.output:
        with open(options.output, "w", encoding="utf-8") as file:
            file.writelines(h + "\n" for h in hypotheses)
    return metrics, what


def print_report(metrics: dict, what: str) -> None:
    print(f"scored {what}")
    print(f"BLEU  {metrics['bleu']:6.2f}   {metrics['bleu_signature']}")
    print(f"BLEU  {metrics['bleu_lc']:6.2f}   {metrics['bleu_lc_signature']}  (lowercased)")
    if "bleu_lc_moses" in metrics:
        moses = f"BLEU  {metrics['bleu_lc_moses']:6.2f}   {metrics['bleu_lc_moses_signature']}"
        print(f"{moses}  (lowercased, Moses-tokenized)")
    print(f"chrF  {metrics['chrf']:6.2f}   {metrics['chrf_signature']}")
    print(f"exact {metrics['exact_match']:6.2f}%")


def main(argv: list[str] | None = None) -> None:
    with user_errors_exit():
        options, search = parse_overrides(sys.argv[1:] if argv is None else argv, EvaluateOptions, USAGE)
        metrics = evaluate(options, search)
        print(
            json.dumps(
                {k: metrics[k] for k in ("bleu", "bleu_lc", "bleu_lc_moses", "chrf", "exact_match") if k in metrics}
            )
        )


if __name__ == "__main__":
    main()
