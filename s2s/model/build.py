"""Building a model from its config and the sizes of the vocabularies it reads and writes."""

from __future__ import annotations

from s2s.config import ModelConfig
from s2s.config_checks import check_model
from s2s.errors import S2SError
from s2s.model.seq2seq import Seq2Seq


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, joint_vocabulary: bool) -> Seq2Seq:
    """A freshly initialised Seq2Seq; `joint_vocabulary` says both sides use one sentencepiece model.

    Shared embeddings need the same vocabulary on both sides, not merely equal sizes: two
    vocabularies of 8000 pieces would give one vector to unrelated pieces.
    """
    check_model(cfg)
    if cfg.share_embeddings and not joint_vocabulary:
        raise S2SError("model.share_embeddings=true needs one joint vocabulary (data.subword.joint=true)")
    if cfg.share_embeddings and src_vocab_size != tgt_vocab_size:
        raise S2SError(
            "model.share_embeddings=true needs one vocabulary for both sides, "
            f"got {src_vocab_size} and {tgt_vocab_size} pieces"
        )
    return Seq2Seq(cfg, src_vocab_size, tgt_vocab_size)
