"""Loading a Translator: a run directory, a checkpoint, a model file, or an ensemble of several.

Ensemble members (s2s/model/ensemble.py) are each built from their own config, so they may
differ in shape and cell type; they must translate between the same languages with the same
vocabularies, which `check_same_task` checks before anything is built.
"""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from s2s.config import Config, SearchConfig, config_from_dict
from s2s.data.subwords import Tokenizers
from s2s.decoding.translator import Translator
from s2s.device import pick_device
from s2s.errors import S2SError
from s2s.model.build import build_model
from s2s.model.ensemble import Combine, Ensemble
from s2s.model.seq2seq import Seq2Seq
from s2s.model_file import ModelSource, read_model


def override_search(search: SearchConfig, overrides: list[str]) -> SearchConfig:
    """Apply `key=value` overrides (keys of SearchConfig) to a search config, type-checked."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(search), OmegaConf.from_dotlist(overrides))
    except Exception as error:  # omegaconf's validation errors: unknown key, wrong type
        raise S2SError(f"bad search override {overrides}: {str(error).splitlines()[0]}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def load_translator(
    model: str | list[str] | None,
    which: str = "best",
    device: str = "auto",
    search_overrides: list[str] | None = None,
    reverse: bool = False,
    combine: str = "probs",
) -> tuple[Translator, Config, str]:
    """A Translator for a run directory, checkpoint or model file, or for an ensemble of several
    (a list of two or more); also returns the (first model's) config and origin.

    The origin is the run directory, or the model file. `reverse` translates data.tgt_lang ->
    data.src_lang with a model trained in both directions; the returned config then has the two
    languages swapped, as a run in that direction would. `combine` (probs | log_probs) is how an
    ensemble averages its members' predictions (s2s/model/ensemble.py).
    """
    target = pick_device(device)
    paths = list(model) if isinstance(model, (list, tuple)) else [model]
    sources = [read_model(path, which, target) for path in paths or [None]]
    return translator_for(sources if len(sources) > 1 else sources[0], target, search_overrides, reverse, combine)


def translator_for(
    source: ModelSource | list[ModelSource],
    device: torch.device,
    search_overrides: list[str] | None = None,
    reverse: bool = False,
    combine: str = "probs",
) -> tuple[Translator, Config, str]:
    """A Translator for weights, config and tokenizers already read (see `load_translator`); a list
    of sources is an ensemble, decoded with the first one's settings."""
    members = source if isinstance(source, list) else [source]
    if combine not in [c.value for c in Combine]:
        raise S2SError(f"combine must be probs or log_probs, got {combine!r}")
    for other in members[1:]:
        check_same_task(members[0], other)
    first = members[0]
    cfg = config_from_dict(first.config)
    tokenizers = first.tokenizers
    if reverse:
        if not cfg.data.both_directions:
            raise S2SError(
                "reverse=true needs a model trained with data.both_directions=true; "
                f"{first.checkpoint_path} translates {cfg.data.src_lang}->{cfg.data.tgt_lang} only"
            )
        cfg.data.src_lang, cfg.data.tgt_lang = cfg.data.tgt_lang, cfg.data.src_lang
    reverse_tag = tokenizers.reverse_tag(cfg.data.src_lang, cfg.data.both_directions)
    if cfg.data.both_directions:
        tokenizers = tokenizers.for_target(cfg.data.tgt_lang)
    models = [_built(member, tokenizers) for member in members]
    model = models[0] if len(models) == 1 else Ensemble(models, combine)
    search = override_search(cfg.search, search_overrides or [])
    translator = Translator(
        model,
        tokenizers,
        search,
        device,
        cfg.data.lowercase,
        reverse_tag,
        config=cfg,
        max_input_tokens=cfg.data.max_len,
    )
    return translator, cfg, first.origin


def _built(source: ModelSource, tokenizers: Tokenizers) -> Seq2Seq:
    cfg = config_from_dict(source.config)
    model = build_model(
        cfg.model,
        tokenizers.src.get_piece_size(),
        tokenizers.tgt.get_piece_size(),
        joint_vocabulary=tokenizers.src is tokenizers.tgt,
    )
    model.load_state_dict(source.weights)
    return model


def check_same_task(first: ModelSource, other: ModelSource) -> None:
    """Ensemble members read and write the same pieces: one search feeds them all the same ids.

    Raises S2SError naming the first difference: languages, lowercasing, directions, vocabulary
    pieces. The first member's tokenizers then serve all of them."""
    a, b = config_from_dict(first.config).data, config_from_dict(other.config).data
    names = f"{other.origin} and {first.origin}"
    for key in ("src_lang", "tgt_lang", "lowercase", "both_directions"):
        if getattr(a, key) != getattr(b, key):
            raise S2SError(
                f"cannot ensemble {names}: data.{key} is {getattr(b, key)} in one and {getattr(a, key)} in the other"
            )
    for side in ("src", "tgt"):
        mine, theirs = getattr(first.tokenizers, side), getattr(other.tokenizers, side)
        # the pieces, not the files: a file also records how it was trained (its seed, say)
        size = mine.get_piece_size()
        if size != theirs.get_piece_size():
            detail = f"{theirs.get_piece_size()} pieces against {size}"
        else:
            piece = next((i for i in range(size) if mine.id_to_piece(i) != theirs.id_to_piece(i)), None)
            if piece is None:
                continue
            detail = f"piece {piece} is {theirs.id_to_piece(piece)!r} against {mine.id_to_piece(piece)!r}"
        what = "source" if side == "src" else "target"
        raise S2SError(f"cannot ensemble {names}: their {what} vocabularies differ ({detail}); members must share them")
