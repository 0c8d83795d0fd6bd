"""Forced decoding: the log-probability a model gives to a given target for a given source.

One teacher-forced pass per batch (the decoder is fed the given target instead of its own
output), so scoring N pairs costs about one training forward pass, not a search. Used by
`Translator.score` (`python -m s2s.score`, the server's /v1/score) and by reranking
(s2s/decoding/rerank.py). Works for a Seq2Seq and an Ensemble alike: both have `log_probs`.
Shapes: B pairs in a batch, S source length, T target length + 1 (EOS), V target vocabulary.
"""

from __future__ import annotations

import torch

from s2s.data.batching import make_batch


def length_batches(lengths: list[int], order: list[int], vocabulary: int, max_logits: int) -> list[list[int]]:
    """Consecutive runs of `order` whose (rows x longest target x vocabulary) logits fit `max_logits`."""
    batches: list[list[int]] = []
    for i in order:
        longest = (
            max(lengths[i], lengths[batches[-1][-1]]) if batches else 0
        )  # order is by length: the last is the longest
        if batches and (len(batches[-1]) + 1) * (longest + 1) * vocabulary <= max_logits:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.inference_mode()
def token_log_probs(
    model, sources: list[list[int]], targets: list[list[int]], device: torch.device, max_logits: int = 2**24
) -> list[list[float]]:
    """Per pair of id lists (without EOS; sources as the model reads them, tag included), the
    log-probability of each target subword and of the final EOS: len(target) + 1 numbers.

    Pairs go through the model sorted by target length, as many at a time as keep the logits
    under `max_logits` numbers (64 MiB in fp32): the decoder's loop runs once per batch, so
    few wide batches are much faster than many narrow ones. The sorting never changes a score
    beyond float rounding: padding is masked in the encoder and ignored after EOS.
    """
    out: list[list[float]] = [[] for _ in sources]
    order = sorted(range(len(sources)), key=lambda i: (len(targets[i]), len(sources[i])))
    for chunk in length_batches([len(t) for t in targets], order, model.target_vocab_size, max_logits):
        batch = make_batch([sources[i] for i in chunk], [targets[i] for i in chunk], chunk).to(device)
        log_probs = model.log_probs(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        picked = log_probs.gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1).cpu()  # (B, T)
        for row, i in enumerate(chunk):
            out[i] = picked[row, : len(targets[i]) + 1].tolist()
    return out


def sequence_log_probs(
    model, sources: list[list[int]], targets: list[list[int]], device: torch.device, max_logits: int = 2**24
) -> list[float]:
    """log p(target | source) per pair, summed over the target's subwords and EOS (see
    `token_log_probs`); a pair with an empty source scores -inf (nothing was read)."""
    usable = [i for i, src in enumerate(sources) if src]
    per_token = token_log_probs(model, [sources[i] for i in usable], [targets[i] for i in usable], device, max_logits)
    scores = [float("-inf")] * len(sources)
    for i, values in zip(usable, per_token):
        scores[i] = float(sum(values))
    return scores
