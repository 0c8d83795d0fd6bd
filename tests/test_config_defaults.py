"""One set of defaults: `s2s.Config()` in Python equals what `python -m s2s.train` composes with no overrides."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import s2s
from s2s.arguments import config_keys
from tests.conftest import make_config


def _leaves(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_every_key_of_the_default_composition_equals_the_dataclass_default():
    composed = _leaves(OmegaConf.to_container(OmegaConf.structured(make_config()), enum_to_str=True))
    python = _leaves(OmegaConf.to_container(OmegaConf.structured(s2s.Config()), enum_to_str=True))
    assert composed.keys() == python.keys()
    differing = {key: (python[key], composed[key]) for key in composed if composed[key] != python[key]}
    assert differing == {}, f"Config() and the default composition disagree (python, yaml): {differing}"


def test_the_comparison_covers_every_config_key():
    leaves = _leaves(OmegaConf.to_container(OmegaConf.structured(s2s.Config())))
    groups = {key.rsplit(".", 1)[0] for key in leaves if "." in key}
    assert set(config_keys()) == set(leaves) | groups


@pytest.mark.parametrize("override", ["model=base", "data=multi30k", "search=beam", "optim=adamw"])
def test_a_non_default_group_changes_the_composition(override):
    """The equality above is not vacuous: choosing another group option does change keys."""
    composed = _leaves(OmegaConf.to_container(OmegaConf.structured(make_config(override)), enum_to_str=True))
    python = _leaves(OmegaConf.to_container(OmegaConf.structured(s2s.Config()), enum_to_str=True))
    assert any(composed[key] != python[key] for key in composed)
