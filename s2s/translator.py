"""Translate lists of sentences with a trained model: tokenize, batch by length, decode, detokenize.

Used by validation during training, by `s2s.translate` and by `s2s.evaluate`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from s2s.batching import make_batch
from s2s.checkpoint import load, resolve_checkpoint
from s2s.config import Config, SearchConfig
from s2s.errors import S2SError
from s2s.model.seq2seq import Seq2Seq
from s2s.search import Hypothesis, decode
from s2s.subwords import Tokenizers, load_tokenizers


@dataclass
class Translation:
    text: str  # detokenized best hypothesis
    n_best: list[tuple[str, float]]  # (text, score) best first
    src_pieces: list[str]  # source subwords (for attention plots)
    tgt_pieces: list[str]  # best hypothesis subwords
    attention: torch.Tensor | None  # (len(tgt_pieces) + 1, len(src_pieces) + 1) incl. EOS rows/columns


class Translator:
    def __init__(self, model: Seq2Seq, tokenizers: Tokenizers, search: SearchConfig, device: torch.device, lowercase: bool = False):
        self.model = model.to(device).eval()
        self.tokenizers, self.search, self.device, self.lowercase = tokenizers, search, device, lowercase
        self.generator = torch.Generator(device=device)

    def translate(self, sentences: list[str], return_attention: bool = False) -> list[Translation]:
        """One Translation per input sentence, in input order; blank input gives empty output."""
        texts = [s.lower() if self.lowercase else s for s in sentences]
        ids = self.tokenizers.encode_src(texts)
        results: list[Translation | None] = [None] * len(sentences)
        todo = [i for i, s in enumerate(texts) if s.strip() and ids[i]]
        for i in set(range(len(sentences))) - set(todo):
            results[i] = Translation("", [("", 0.0)], [], [], None)
        todo.sort(key=lambda i: len(ids[i]))  # similar lengths together: little padding
        for start in range(0, len(todo), self.search.batch_size):
            chunk = todo[start : start + self.search.batch_size]
            batch = make_batch([ids[i] for i in chunk], None, chunk).to(self.device)
            hypotheses = decode(self.model, batch, self.search, self.generator, return_attention)
            for i, n_best in zip(chunk, hypotheses):
                results[i] = self._translation(texts[i], n_best)
        return results  # type: ignore[return-value]

    def _translation(self, source: str, n_best: list[Hypothesis]) -> Translation:
        texts = self.tokenizers.decode_tgt([h.tokens for h in n_best])
        best = n_best[0]
        return Translation(
            text=texts[0],
            n_best=[(text, h.score) for text, h in zip(texts, n_best)],
            src_pieces=self.tokenizers.src_pieces(source),
            tgt_pieces=self.tokenizers.tgt_pieces(best.tokens),
            attention=best.attention.cpu() if best.attention is not None else None,
        )


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; otherwise the named device, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise S2SError(f"device={name} is not a device name (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise S2SError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    return device


def config_from_dict(values: dict) -> Config:
    """Rebuild a typed Config from the plain dict stored in a checkpoint."""
    merged = OmegaConf.merge(OmegaConf.structured(Config), values)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def build_model(cfg: Config, tokenizers: Tokenizers) -> Seq2Seq:
    return Seq2Seq(cfg.model, tokenizers.src.get_piece_size(), tokenizers.tgt.get_piece_size())


def override_search(search: SearchConfig, overrides: list[str]) -> SearchConfig:
    """Apply `key=value` overrides (keys of SearchConfig) to a search config, type-checked."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(search), OmegaConf.from_dotlist(overrides))
    except Exception as error:  # omegaconf's validation errors: unknown key, wrong type
        raise S2SError(f"bad search override {overrides}: {str(error).splitlines()[0]}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def load_translator(
    run: str | None, which: str = "best", device: str = "auto", search_overrides: list[str] | None = None
) -> tuple[Translator, Config, str]:
    """A Translator for a training run (directory or checkpoint); also returns its config and run dir."""
    run_dir, path = resolve_checkpoint(run, which)
    target = pick_device(device)
    state = load(path, target)
    if "model" not in state or "config" not in state:
        raise S2SError(f"{path} is not an s2s checkpoint (no model or config inside)")
    cfg = config_from_dict(state["config"])
    tokenizers = load_tokenizers(run_dir if os.path.isdir(run_dir) else os.path.dirname(path))
    model = build_model(cfg, tokenizers)
    model.load_state_dict(state["model"])
    search = override_search(cfg.search, search_overrides or [])
    return Translator(model, tokenizers, search, target, cfg.data.lowercase), cfg, run_dir
