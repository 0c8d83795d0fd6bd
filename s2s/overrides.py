"""Check command-line overrides against the typed config before Hydra runs.

Hydra would reject a misspelt key too, but over several lines; this gives one line
naming the key and the closest valid one, and checks value types the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from s2s.config import Config
from s2s.errors import S2SError

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
GROUPS = ("data", "model", "optim", "search", "experiment")


def config_keys(node: Any = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config dataclasses, e.g. `model.decoder.cell`."""
    keys = []
    for f in dataclasses.fields(node):
        key = prefix + f.name
        keys.append(key)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            keys.extend(config_keys(type(default), key + "."))
    return keys


def group_options(group: str) -> list[str]:
    folder = os.path.join(CONF_DIR, group)
    if not os.path.isdir(folder):
        return []
    return sorted(name[: -len(".yaml")] for name in os.listdir(folder) if name.endswith(".yaml"))


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_overrides(args: list[str]) -> None:
    """Raise S2SError for an override whose key is unknown or whose value has the wrong type."""
    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception as error:  # Hydra's grammar errors
        raise S2SError(f"cannot parse overrides: {str(error).splitlines()[0]}") from None
    keys = config_keys()
    schema = OmegaConf.structured(Config)
    for override in overrides:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_add() or override.is_delete() or override.package:
            continue
        if key in GROUPS:
            _check_group_choice(override, key)
            continue
        if key not in keys:
            raise S2SError(f"unknown config key {key!r}{_suggest(key, keys + list(GROUPS))}")
        if not override.is_sweep_override():
            _check_value(schema, key, override.value())
        elif not override.is_interval_sweep():
            for value in override.sweep_iterator():
                _check_value(schema, key, value)


def _check_group_choice(override: Any, group: str) -> None:
    options = group_options(group)
    values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
    for value in values:
        if isinstance(value, str) and value not in options:
            raise S2SError(f"unknown {group} config {value!r} (conf/{group}/ has {', '.join(options)}){_suggest(value, options)}")


def _check_value(schema: Any, key: str, value: Any) -> None:
    try:
        OmegaConf.update(schema, key, value, merge=True)
    except Exception as error:  # omegaconf validation: wrong type or value
        first = str(error).splitlines()[0]
        raise S2SError(f"bad value for {key}: {first}") from None
