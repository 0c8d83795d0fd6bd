"""`python -m s2s.export --model RUN [--checkpoint best] --out model.s2s [--precision fp32|bf16|int8]`

Writes one self-contained model file (s2s/model_file.py): the weights, the sentencepiece
model(s), the config and a model card. The file works wherever a run does:
`python -m s2s.translate --model model.s2s`, `s2s.evaluate`, `s2s.load("model.s2s")`, `s2s.serve`.
The card records the validation and test scores of the weights as stored, measured here on
the run's corpus (greedy unless search.* options say otherwise), with their sacreBLEU
signatures; bf16 and int8 storage also records the fp32 score, so the loss is seen.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from s2s.arguments import parse_overrides
from s2s.checkpoint import check_name as check_checkpoint_name
from s2s.commands.evaluate import score_split
from s2s.config import Config, config_as_dict, config_from_dict
from s2s.decoding.loading import override_search, translator_for
from s2s.device import pick_device
from s2s.errors import S2SError, user_errors_exit
from s2s.model_file import STORAGES, ModelSource, model_file_payload, read_model, source_from_payload, write_model_file

USAGE = (
    __doc__
    + """
Options, as --flag VALUE or key=value:
  --model PATH          training run directory or checkpoint file (--run is the same; default: the latest run)
  --checkpoint best     best | last | averaged (python -m s2s.average) | step-N
  --out PATH            the model file to write (required)
  --precision fp32      fp32 | bf16 | int8: how the weights are stored (bf16: half the size; int8: a quarter,
                        per-row scales); decoding precision is chosen when the model is loaded
  --name NAME           the model's name in its card and the server's replies (default: the file name)
  --scores true         translate the validation and test splits to record their scores in the card
  --data-dir PATH       read the corpus from here instead of the run's data.dir
  --device auto         auto | cpu | cuda | cuda:N, for scoring
  search.KEY=VALUE      decoding defaults stored in the file (beam_size, length_penalty, ...)
"""
)


@dataclass
class ExportOptions:
    model: str | None = None  # run directory or checkpoint (default: the latest run under outputs/)
    checkpoint: str = "best"  # best | last | averaged | step-N
    out: str | None = None  # the model file to write
    precision: str = "fp32"  # storage precision: fp32 | bf16 | int8
    name: str | None = None  # the card's name (default: the file name without extension)
    scores: bool = True  # score the validation and test splits into the card
    data_dir: str | None = None  # default: the run's data.dir
    device: str = "auto"


def export(options: ExportOptions, search_overrides: list[str], log: Any = None) -> dict[str, Any]:
    """Write the model file; returns its card."""
    log = log if log is not None else sys.stderr
    if not options.out:
        raise S2SError("give the file to write: --out model.s2s")
    if options.precision not in STORAGES:
        raise S2SError(f"--precision {options.precision} must be one of {', '.join(STORAGES)}")
    check_checkpoint_name(options.checkpoint)
    if options.model is not None and os.path.isdir(options.out):
        raise S2SError(f"--out {options.out} is a directory; give a file name such as {options.out}/model.s2s")
    device = pick_device(options.device)
    source = read_model(options.model, options.checkpoint, device)
    cfg = config_from_dict(source.config)
    cfg.search = override_search(cfg.search, search_overrides)
    config = config_as_dict(cfg)
    name = options.name or os.path.splitext(os.path.basename(options.out))[0]
    card = model_card(name, source, cfg, options)
    payload = model_file_payload(source, options.precision, card, config)
    if options.scores:
        stored = source_from_payload(payload, options.out)
        card["scores"] = split_scores(stored, cfg, options, device, log)
        if options.precision != "fp32":
            fp32 = split_scores(dataclasses.replace(source, config=config), cfg, options, device, log)
            for split, scores in card["scores"].items():
                scores["bleu_fp32"] = fp32[split]["bleu"]
    write_model_file(payload, options.out)
    size = os.path.getsize(options.out) / 1e6
    print(f"wrote {options.out} ({size:.1f} MB, {options.precision} weights) from {source.checkpoint_path}", file=log)
    return card


def model_card(name: str, source: ModelSource, cfg: Config, options: ExportOptions) -> dict[str, Any]:
    """What a user of the file needs to know about it, without running it."""
    import s2s

    data = cfg.data
    state = source.checkpoint_state
    return {
        "name": name,
        "s2s_version": s2s.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_lang": data.src_lang,
        "target_lang": data.tgt_lang,
        "both_directions": data.both_directions,
        "lowercase": data.lowercase,
        "training_data": {
            "name": data.name,
            "format": data.format.value,
            "location": data.hub_name if data.format.value == "hub" else (options.data_dir or data.dir),
            "train_split": data.train_split,
        },
        "checkpoint": os.path.basename(source.checkpoint_path),
        "step": state.get("progress", {}).get("step"),
        "validation_at_training": state.get("metrics") or {},
        "parameters": sum(t.numel() for t in source.weights.values()),
        "architecture": {
            "encoder": f"bidirectional {cfg.model.encoder.cell.value}, {cfg.model.encoder.num_layers} layer(s) "
            f"of {cfg.model.encoder.hidden_size} per direction",
            "decoder": f"{cfg.model.decoder.cell.value}, {cfg.model.decoder.num_layers} layer(s) "
            f"of {cfg.model.decoder.hidden_size}, attention {cfg.model.decoder.attention.value}",
        },
        "vocabulary": {
            "joint": source.tokenizers.src is source.tokenizers.tgt,
            "source_size": source.tokenizers.src.get_piece_size(),
            "target_size": source.tokenizers.tgt.get_piece_size(),
        },
        "storage": options.precision,
        "search": config_as_dict(cfg)["search"],
    }


def split_scores(source: ModelSource, cfg: Config, options: ExportOptions, device: Any, log: Any) -> dict:
    """BLEU and chrF (with signatures) of the validation and test splits, decoded from `source`."""
    translator, _, _ = translator_for(source, device)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dir=options.data_dir or cfg.data.dir))
    scores = {}
    for split in dict.fromkeys((cfg.data.valid_split, cfg.data.test_split)):
        try:
            _, metrics, count = score_split(translator, cfg, split)
        except S2SError as error:
            raise S2SError(f"cannot score split {split!r} for the card ({error}); give --data-dir or --scores false")
        scores[split] = {k: v for k, v in metrics.items() if k.startswith(("bleu", "chrf"))}
        scores[split]["sentences"] = count
        print(f"{split}: BLEU {metrics['bleu']:.2f} chrF {metrics['chrf']:.2f} ({count} lines)", file=log)
    return scores


def main(argv: list[str] | None = None) -> None:
    with user_errors_exit():
        options, search = parse_overrides(sys.argv[1:] if argv is None else argv, ExportOptions, USAGE)
        card = export(options, search)
        print(json.dumps(card))


if __name__ == "__main__":
    main()
