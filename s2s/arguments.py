"""Command-line arguments: Hydra overrides for `s2s.train`, options and flags for the other commands.

`s2s.train` is a Hydra app. `check_overrides` checks its `key=value` overrides against
the typed config before Hydra runs: Hydra would reject a misspelt key too, but over
several lines; this gives one line naming the key and the closest valid one, and
checks value types (and config group choices, and cluster plugins) the same way.

`s2s.translate`, `s2s.evaluate` and `s2s.average` read a training run; they are not
Hydra apps, so they make no run directory of their own. `parse_overrides` merges their
`key=value` options into a typed dataclass with OmegaConf, so a wrong key or type fails
with one line; `search.*` keys override the run's decoding settings. Every option can
also be written as a flag: `--foo-bar X` or `--foo-bar=X` is `foo_bar=X`, a bare boolean
flag (`--scores`) is `scores=true`, and a few search options have short flags
(`--beam-size 5` is `search.beam_size=5`). Flags are only translated here; the same typed
merge then checks them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import typing
from typing import Any, TypeVar

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from s2s.config import Config, SearchConfig
from s2s.errors import S2SError, did_you_mean

T = TypeVar("T")

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
            raise S2SError(f"unknown config key {key!r}{did_you_mean(key, keys + list(GROUPS))}")
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
            raise S2SError(
                f"unknown {group} config {value!r} ({where} has {', '.join(options)} in {group}/)"
                f"{did_you_mean(value, options)}"
            )


def _check_value(schema: Any, key: str, value: Any) -> None:
    try:
        OmegaConf.update(schema, key, value, merge=True)
    except Exception as error:  # omegaconf validation: wrong type or value
        first = str(error).splitlines()[0]
        raise S2SError(f"bad value for {key}: {first}") from None


# ----- options and flags of translate, evaluate and average ------------------------------------
# flag name (dashes as underscores) -> option key, for search options common enough to deserve a short flag
SEARCH_ALIASES = {
    "beam_size": "search.beam_size",
    "n_best": "search.n_best",
    "batch_size": "search.batch_size",
    "precision": "search.precision",
}

# older option names that still work: `--run PATH` (or run=PATH) is `--model PATH`
OPTION_ALIASES = {"run": "model"}


def parse_overrides(argv: list[str], schema: type[T], usage: str) -> tuple[T, list[str]]:
    """Split arguments (`key=value` or flags) into the command's options and `search.*` overrides."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    own, search = [], []
    repeated: dict[str, list[str]] = {}  # list-typed options (--model A --model B): every value, in order
    spellings = {}  # key -> how the user wrote it, to name it their way in errors
    own_keys = [f.name for f in dataclasses.fields(schema)]  # type: ignore[arg-type]
    list_keys = _list_keys(schema)
    search_keys = ["search." + f.name for f in dataclasses.fields(SearchConfig)]
    for arg, spelled in flags_to_overrides(argv, _boolean_keys(schema), own_keys):
        key, sep, value = arg.partition("=")
        if key in OPTION_ALIASES and OPTION_ALIASES[key] in own_keys:
            key = OPTION_ALIASES[key]
            arg = f"{key}={value}"
        spellings[key] = spelled
        if not sep:
            raise S2SError(f"expected key=value or --flag, got {arg!r} (see --help)")
        if key.startswith("search."):
            if key not in search_keys:
                raise S2SError(f"unknown option {spelled!r}{_suggest_option(key, spelled, search_keys)}")
            search.append(arg[len("search.") :])
        elif key in list_keys:
            repeated.setdefault(key, []).append(value)
        elif key in own_keys:
            if any(o.partition("=")[0] == key for o in own):  # one value: a second would silently win
                hint = " (ensembles: translate, evaluate, score, serve)" if key == "model" else ""
                raise S2SError(f"{spelled} is given twice: this command takes one value{hint}")
            own.append(arg)
        else:
            raise S2SError(f"unknown option {spelled!r}{_suggest_option(key, spelled, own_keys + search_keys)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(own))
    except Exception as error:  # omegaconf's validation errors
        key = getattr(error, "full_key", None)
        where = f" {spellings.get(key, key)}" if key else ""
        raise S2SError(f"bad option{where}: {str(error).splitlines()[0]}") from None
    for key, values in repeated.items():  # set whole: a path may hold commas or brackets
        OmegaConf.update(merged, key, values, merge=False)
    return OmegaConf.to_object(merged), search  # type: ignore[return-value]


def _list_keys(schema: type) -> set[str]:
    """Option keys typed list[str]: given once or repeated, each value is one item."""
    return {name for name, kind in typing.get_type_hints(schema).items() if typing.get_origin(kind) is list}


def flags_to_overrides(
    argv: list[str], booleans: set[str], own_keys: tuple[str, ...] | list[str] = ()
) -> list[tuple[str, str]]:
    """Rewrite flags as `key=value`; returns (override, how the user spelled the option) pairs.

    `--foo-bar X` and `--foo-bar=X` give `foo_bar=X`; a flag whose key is in
    `booleans` takes no separate value, so a bare `--scores` gives `scores=true`. A short search
    flag (`--precision`) is the command's own option when the command has one of that name.
    Arguments that are not flags pass through unchanged.
    """
    out: list[tuple[str, str]] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg == "-":
            out.append((arg, arg.partition("=")[0]))
            continue
        if not arg.startswith("--"):
            raise S2SError(f"unknown option {arg!r}: flags are long (--name), see --help")
        name, sep, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        key = key if key in own_keys else SEARCH_ALIASES.get(key, key)
        if not sep:
            if key in booleans:
                value = "true"
            else:
                value = next(args, None)  # type: ignore[arg-type]
                if value is None or value.startswith("--"):
                    raise S2SError(f"option --{name} needs a value: --{name} VALUE or --{name}=VALUE")
        out.append((f"{key}={value}", f"--{name}"))
    return out


def _boolean_keys(schema: type) -> set[str]:
    """Option keys (own and `search.*`) whose type is bool: their flags need no value."""
    own = {name for name, kind in typing.get_type_hints(schema).items() if kind is bool}
    search = {"search." + name for name, kind in typing.get_type_hints(SearchConfig).items() if kind is bool}
    return own | search


def _suggest_option(key: str, spelled: str, choices: list[str]) -> str:
    """'; did you mean ...?' with the closest valid option, written the way the user wrote theirs."""
    if not spelled.startswith("--"):
        return did_you_mean(key, choices)
    return did_you_mean(spelled, [f"--{name.replace('_', '-')}" for name in choices + list(SEARCH_ALIASES)])
