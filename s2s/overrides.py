"""Check command-line overrides against the typed config before Hydra runs.

Hydra would reject a misspelt key too, but over several lines; this gives one line
naming the key and the closest valid one, and checks value types the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from s2s.config import Config
from s2s.errors import S2SError

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")  # the packaged configs (package data)
GROUPS = ("data", "model", "optim", "search", "experiment")
# packaged Hydra options whose plugin comes with the `cluster` extra: option -> (plugin module, pip name)
PLUGINS = {
    "hydra/launcher=local_parallel": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "hydra/sweeper=bleu_search": ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
    "experiment=sweep_bleu": ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
}


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


def user_config_dirs(args: list[str]) -> list[str]:
    """The directories given with Hydra's `--config-dir DIR` / `-cd DIR` (or `--config-dir=DIR`)."""
    dirs, items = [], iter(args)
    for arg in items:
        if arg in ("--config-dir", "-cd"):
            dirs.append(next(items, ""))
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    for folder in dirs:
        if not os.path.isdir(folder):
            raise S2SError(f"--config-dir {folder or '(missing)'} is not a directory")
    return dirs


def group_options(group: str, extra_dirs: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The options of a config group: the packaged YAMLs and those in the user's config directories."""
    names = set()
    for root in [CONF_DIR, *extra_dirs]:
        folder = os.path.join(root, group)
        if os.path.isdir(folder):
            names.update(name[: -len(".yaml")] for name in os.listdir(folder) if name.endswith(".yaml"))
    return sorted(names)


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
    extra_dirs = user_config_dirs(args)
    keys = config_keys()
    schema = OmegaConf.structured(Config)
    for override in overrides:
        _check_plugin(override)
        key = override.key_or_group
        if key.startswith("hydra") or override.is_add() or override.is_delete() or override.package:
            continue
        if key in GROUPS:
            _check_group_choice(override, key, extra_dirs)
            continue
        if key not in keys:
            raise S2SError(f"unknown config key {key!r}{_suggest(key, keys + list(GROUPS))}")
        if not override.is_sweep_override():
            _check_value(schema, key, override.value())
        elif not override.is_interval_sweep():
            for value in override.sweep_iterator():
                _check_value(schema, key, value)


def _check_plugin(override: Any) -> None:
    """A launcher or sweeper whose plugin is not installed: say which extra brings it."""
    values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
    for value in values:
        plugin = PLUGINS.get(f"{override.key_or_group}={value}")
        if plugin and importlib.util.find_spec(plugin[0]) is None:
            raise S2SError(f"{override.key_or_group}={value} needs {plugin[1]}: pip install 's2s[cluster]'")


def _check_group_choice(override: Any, group: str, extra_dirs: list[str]) -> None:
    options = group_options(group, extra_dirs)
    values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
    for value in values:
        if isinstance(value, str) and value not in options:
            where = " or ".join(["s2s/conf"] + [f"--config-dir {d}" for d in extra_dirs])
            raise S2SError(f"unknown {group} config {value!r} ({where} has {', '.join(options)} in {group}/){_suggest(value, options)}")


def _check_value(schema: Any, key: str, value: Any) -> None:
    try:
        OmegaConf.update(schema, key, value, merge=True)
    except Exception as error:  # omegaconf validation: wrong type or value
        first = str(error).splitlines()[0]
        raise S2SError(f"bad value for {key}: {first}") from None
