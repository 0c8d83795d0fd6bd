"""Argument parsing shared by `s2s.translate` and `s2s.evaluate`: `key=value` overrides.

These commands read a training run; they are not Hydra apps, so they make no run
directory of their own. Their options are typed dataclasses merged with OmegaConf,
so a wrong key or type fails with one line; `search.*` keys override the run's
decoding settings.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import fields
from typing import TypeVar

from omegaconf import OmegaConf

from s2s.config import SearchConfig
from s2s.errors import S2SError

T = TypeVar("T")


def parse_overrides(argv: list[str], schema: type[T], usage: str) -> tuple[T, list[str]]:
    """Split `key=value` arguments into the command's options and `search.*` overrides."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    own, search = [], []
    own_keys = [f.name for f in fields(schema)]  # type: ignore[arg-type]
    search_keys = ["search." + f.name for f in fields(SearchConfig)]
    for arg in argv:
        key, sep, _ = arg.partition("=")
        if not sep:
            raise S2SError(f"expected key=value, got {arg!r} (see --help)")
        if key.startswith("search."):
            if key not in search_keys:
                raise S2SError(f"unknown option {key!r}{_suggest(key, search_keys)}")
            search.append(arg[len("search.") :])
        elif key in own_keys:
            own.append(arg)
        else:
            raise S2SError(f"unknown option {key!r}{_suggest(key, own_keys + search_keys)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(own))
    except Exception as error:  # omegaconf's validation errors
        raise S2SError(f"bad option: {str(error).splitlines()[0]}") from None
    return OmegaConf.to_object(merged), search  # type: ignore[return-value]


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""
