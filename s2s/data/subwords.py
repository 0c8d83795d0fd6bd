"""Subword tokenization with sentencepiece: train on the training split, save with the run, reuse.

Ids are fixed across all models: 0 padding, 1 unknown, 2 begin, 3 end of sentence.
A joint vocabulary is one file `spm.model` used for both sides; separate
vocabularies are `spm.src.model` and `spm.tgt.model`. A model trained in both directions
(`data.both_directions`) has a tag piece per language, `<2en>`, `<2de>`, ..., and reads the
wanted output language's tag before each source (Johnson et al., 2017): `Tokenizers.for_target`.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm

from s2s.config import SubwordConfig
from s2s.errors import S2SError
from s2s.special_tokens import BOS, EOS, PAD, UNK

JOINT_FILE, SRC_FILE, TGT_FILE = "spm.model", "spm.src.model", "spm.tgt.model"


@dataclass
class Tokenizers:
    """The source and target sentencepiece processors (the same object when joint).

    `src_prefix` is put before every non-empty encoded source: the output language's tag
    for a model trained in both directions, else nothing.
    """

    src: spm.SentencePieceProcessor
    tgt: spm.SentencePieceProcessor
    src_prefix: tuple[int, ...] = ()

    def for_target(self, lang: str) -> "Tokenizers":
        """These tokenizers with sources tagged for output in `lang` (a both-directions vocabulary)."""
        tag = direction_tag(lang)
        tag_id = self.src.piece_to_id(tag)
        if tag_id == UNK or self.src.id_to_piece(tag_id) != tag:
            raise S2SError(
                f"the vocabulary has no {tag} piece: "
                f"the model was not trained with data.both_directions=true toward {lang!r}"
            )
        return replace(self, src_prefix=(tag_id,))

    def reverse_tag(self, src_lang: str, both_directions: bool) -> tuple[int, ...]:
        """The tag that makes a both-directions model read a candidate back toward `src_lang`
        (for scoring log p(source | candidate)); () for a one-way model."""
        return self.for_target(src_lang).src_prefix if both_directions else ()

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return self._prefixed(self.src.encode(texts))

    def _prefixed(self, encoded: list[list[int]]) -> list[list[int]]:
        if not self.src_prefix:
            return encoded
        return [[*self.src_prefix, *ids] if ids else ids for ids in encoded]

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return self.tgt.encode(texts)

    def sample_src(self, texts: list[str], alpha: float) -> list[list[int]]:
        """One random segmentation per text (subword regularization); one thread, so the seed fixes it."""
        return self._prefixed(self.src.encode(texts, enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1))

    def sample_tgt(self, texts: list[str], alpha: float) -> list[list[int]]:
        return self.tgt.encode(texts, enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1)

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        return self.tgt.decode(ids)


def direction_tag(lang: str) -> str:
    """The source piece that asks a both-directions model for output in `lang`."""
    return f"<2{lang}>"


def _sample(sentences: Iterable[str], limit: int, seed: int) -> list[str]:
    """A reservoir sample of at most `limit` non-empty sentences, so memory stays bounded."""
    rng = random.Random(seed)
    reservoir: list[str] = []
    for seen, sentence in enumerate(s for s in sentences if s.strip()):
        if seen < limit:
            reservoir.append(sentence)
        else:
            slot = rng.randint(0, seen)
            if slot < limit:
                reservoir[slot] = sentence
    return reservoir


def _train_one(
    sentences: list[str], path: str, cfg: SubwordConfig, seed: int, symbols: Sequence[str] = ()
) -> spm.SentencePieceProcessor:
    if not sentences:
        raise S2SError("cannot train a subword model: the training text is empty")
    prefix = path[: -len(".model")]
    spm.set_random_generator_seed(seed)  # the same corpus and seed give the same vocabulary
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=prefix,
        model_type=cfg.model_type.value,
        vocab_size=cfg.vocab_size,
        hard_vocab_limit=False,  # small corpora (the dates task) cannot fill a large vocabulary
        character_coverage=cfg.character_coverage,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        minloglevel=2,
        num_threads=os.cpu_count() or 1,
        **({"user_defined_symbols": list(symbols)} if symbols else {}),  # always one piece each
    )
    os.remove(prefix + ".vocab")
    return load_processor(path)


def train_tokenizers(
    src_texts: Iterable[str],
    tgt_texts: Iterable[str],
    cfg: SubwordConfig,
    out_dir: str,
    seed: int = 0,
    symbols: Sequence[str] = (),
) -> Tokenizers:
    """Train sentencepiece model(s) on a bounded sample of the training text; save into out_dir.

    `symbols` become pieces of their own in the source vocabulary (the joint one when joint).

    The texts may be streams (read from Arrow a batch at a time); each is consumed once and
    only a reservoir sample of `cfg.max_sentences` sentences is kept.
    """
    os.makedirs(out_dir, exist_ok=True)
    if cfg.joint:
        both: Iterator[str] = (s for pair in zip(src_texts, tgt_texts) for s in pair)
        joint = _train_one(
            _sample(both, cfg.max_sentences, seed), os.path.join(out_dir, JOINT_FILE), cfg, seed, symbols
        )
        return Tokenizers(src=joint, tgt=joint)
    src = _train_one(_sample(src_texts, cfg.max_sentences, seed), os.path.join(out_dir, SRC_FILE), cfg, seed, symbols)
    tgt = _train_one(_sample(tgt_texts, cfg.max_sentences, seed), os.path.join(out_dir, TGT_FILE), cfg, seed)
    return Tokenizers(src=src, tgt=tgt)


def load_processor(path: str) -> spm.SentencePieceProcessor:
    if not os.path.isfile(path):
        raise S2SError(f"sentencepiece model {path} does not exist")
    try:
        return spm.SentencePieceProcessor(model_file=path)
    except (OSError, RuntimeError) as error:
        raise S2SError(f"cannot read sentencepiece model {path}: {error}") from None


def load_tokenizers(run_dir: str) -> Tokenizers:
    """Load the tokenizers a training run saved into its directory."""
    joint_path = os.path.join(run_dir, JOINT_FILE)
    if os.path.isfile(joint_path):
        joint = load_processor(joint_path)
        return Tokenizers(src=joint, tgt=joint)
    return Tokenizers(
        src=load_processor(os.path.join(run_dir, SRC_FILE)), tgt=load_processor(os.path.join(run_dir, TGT_FILE))
    )


def tokenizer_protos(tokenizers: Tokenizers) -> dict[str, bytes]:
    """The serialized sentencepiece model(s), by the file name a run directory gives them."""
    if tokenizers.src is tokenizers.tgt:
        return {JOINT_FILE: tokenizers.src.serialized_model_proto()}
    return {SRC_FILE: tokenizers.src.serialized_model_proto(), TGT_FILE: tokenizers.tgt.serialized_model_proto()}


def tokenizers_from_protos(protos: dict[str, bytes]) -> Tokenizers:
    """Tokenizers from `tokenizer_protos` output (as a model file stores them)."""
    try:
        if JOINT_FILE in protos:
            joint = spm.SentencePieceProcessor(model_proto=protos[JOINT_FILE])
            return Tokenizers(src=joint, tgt=joint)
        return Tokenizers(
            src=spm.SentencePieceProcessor(model_proto=protos[SRC_FILE]),
            tgt=spm.SentencePieceProcessor(model_proto=protos[TGT_FILE]),
        )
    except (KeyError, RuntimeError, TypeError) as error:
        raise S2SError(f"the stored sentencepiece model cannot be read: {type(error).__name__}: {error}") from None


def tokenizer_files(run_dir: str) -> list[str]:
    """The sentencepiece files present in a run directory."""
    return [
        os.path.join(run_dir, f) for f in (JOINT_FILE, SRC_FILE, TGT_FILE) if os.path.isfile(os.path.join(run_dir, f))
    ]
