"""Validation during training: the loss on the validation split, then its translation scored."""

from __future__ import annotations

from typing import Any

import torch

from s2s.config import Config
from s2s.data.batching import Batch
from s2s.data.pipeline import TrainingData
from s2s.decoding.scoring import translate_and_score
from s2s.decoding.translator import Translator
from s2s.metrics import perplexity
from s2s.model.seq2seq import Seq2Seq
from s2s.training.loss import token_loss


@torch.inference_mode()
def validation_loss(model: Seq2Seq, batches: list[Batch], device: torch.device) -> float:
    """Mean cross-entropy per target token (no label smoothing) over `batches`."""
    model.eval()
    total, tokens = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        total += float(token_loss(logits, batch.tgt_out, 0.0))
        tokens += batch.num_tgt_tokens
    return total / max(tokens, 1)


def validate(model: Seq2Seq, data: TrainingData, cfg: Config, device: torch.device, step: int) -> dict[str, Any]:
    """Loss, perplexity and the scores of the decoded validation split (its first trainer.valid_max_sentences)."""
    loss = validation_loss(model, data.valid.loss_batches, device)
    limit = cfg.trainer.valid_max_sentences or len(data.valid.sources)
    reverse_tag = data.tokenizers.reverse_tag(cfg.data.src_lang, cfg.data.both_directions)
    translator = Translator(model, data.tokenizers, cfg.search, device, cfg.data.lowercase, reverse_tag)
    sources, references = data.valid.sources[:limit], data.valid.references[:limit]
    _, scores = translate_and_score(
        translator, sources, references, description="validate", progress_bar=cfg.trainer.progress_bar
    )
    return {"step": step, "loss": round(loss, 4), "ppl": round(perplexity(loss), 2), **scores}
