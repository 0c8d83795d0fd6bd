"""Building a model from its config (s2s.model.build): settings the vocabularies rule out."""

from __future__ import annotations

import pytest

from s2s.errors import S2SError
from s2s.model.build import build_model
from tests.helpers import tiny_config


def test_shared_embeddings_need_equal_vocabularies():
    cfg = tiny_config()
    cfg.share_embeddings = True
    with pytest.raises(S2SError, match="needs one vocabulary for both sides, got 40 and 30 pieces"):
        build_model(cfg, 40, 30, joint_vocabulary=True)
    with pytest.raises(S2SError, match=r"needs one joint vocabulary \(data.subword.joint=true\)"):
        build_model(cfg, 40, 40, joint_vocabulary=False)  # equal sizes are not enough
