"""Argument parsing shared by `s2s.translate` and `s2s.evaluate`: `key=value` overrides or GNU-style flags.

These commands read a training run; they are not Hydra apps, so they make no run
directory of their own. Their options are typed dataclasses merged with OmegaConf,
so a wrong key or type fails with one line; `search.*` keys override the run's
decoding settings.

Every option can also be written as a flag: `--foo-bar X` or `--foo-bar=X` is
`foo_bar=X`, a bare boolean flag (`--scores`) is `scores=true`, and a few search
options have short flags (`--beam-size 5` is `search.beam_size=5`). Flags are
only translated here; the same typed merge then checks them.
"""

from __future__ import annotations

import difflib
import sys
import typing
from dataclasses import fields
from typing import TypeVar

from omegaconf import OmegaConf

from s2s.config import SearchConfig
from s2s.errors import S2SError

T = TypeVar("T")

# flag name (dashes as underscores) -> option key, for search options common enough to deserve a short flag
SEARCH_ALIASES = {"beam_size": "search.beam_size", "n_best": "search.n_best", "batch_size": "search.batch_size", "precision": "search.precision"}


def parse_overrides(argv: list[str], schema: type[T], usage: str) -> tuple[T, list[str]]:
    """Split arguments (`key=value` or flags) into the command's options and `search.*` overrides."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    own, search = [], []
    spellings = {}  # key -> how the user wrote it, to name it their way in errors
    own_keys = [f.name for f in fields(schema)]  # type: ignore[arg-type]
    search_keys = ["search." + f.name for f in fields(SearchConfig)]
    for arg, spelled in flags_to_overrides(argv, _boolean_keys(schema)):
        key, sep, _ = arg.partition("=")
        spellings[key] = spelled
        if not sep:
            raise S2SError(f"expected key=value or --flag, got {arg!r} (see --help)")
        if key.startswith("search."):
            if key not in search_keys:
                raise S2SError(f"unknown option {spelled!r}{_suggest(key, spelled, search_keys)}")
            search.append(arg[len("search.") :])
        elif key in own_keys:
            own.append(arg)
        else:
            raise S2SError(f"unknown option {spelled!r}{_suggest(key, spelled, own_keys + search_keys)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(own))
    except Exception as error:  # omegaconf's validation errors
        key = getattr(error, "full_key", None)
        where = f" {spellings.get(key, key)}" if key else ""
        raise S2SError(f"bad option{where}: {str(error).splitlines()[0]}") from None
    return OmegaConf.to_object(merged), search  # type: ignore[return-value]


def flags_to_overrides(argv: list[str], booleans: set[str]) -> list[tuple[str, str]]:
    """Rewrite flags as `key=value`; returns (override, how the user spelled the option) pairs.

    `--foo-bar X` and `--foo-bar=X` give `foo_bar=X`; a flag whose key is in
    `booleans` takes no separate value, so a bare `--scores` gives `scores=true`.
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
        key = SEARCH_ALIASES.get(key, key)
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


def _suggest(key: str, spelled: str, choices: list[str]) -> str:
    """'; did you mean ...?' with the closest valid option, written the way the user wrote theirs."""
    if not spelled.startswith("--"):
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
        return f"; did you mean {close[0]!r}?" if close else ""
    flags = [f"--{name.replace('_', '-')}" for name in choices + list(SEARCH_ALIASES)]
    close = difflib.get_close_matches(spelled, flags, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""
