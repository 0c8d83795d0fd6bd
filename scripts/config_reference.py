"""Write docs/configuration.md, the reference of every config key, from s2s/config.py.

    python -m scripts.config_reference            # (re)write docs/configuration.md
    python -m scripts.config_reference --check    # exit 1 if the file is stale, 0 if it is current
    python -m scripts.config_reference --path P   # write (or --check) P instead

Each key's meaning is the `# comment` that ends its line in s2s/config.py (or, for a field
without one, the comment lines directly above it); its type and default come from the
dataclasses themselves, and the group options from the YAML files under s2s/conf/.
tests/scripts/test_config_reference.py fails when the committed page differs from `render()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path

import yaml

from s2s import config

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
REGENERATE = "python -m scripts.config_reference"


def conf_dir() -> Path:
    """The folder of Hydra's YAML groups: s2s/conf/ (packaged) or, before the move, conf/."""
    packaged = ROOT / "s2s" / "conf"
    return packaged if packaged.is_dir() else ROOT / "conf"


def field_comments(cls: type) -> dict[str, str]:
    """Map each field (or enum member) of `cls` to its comment in the class's source.

    The comment is the trailing `# ...` of the statement that defines the name; when there is
    none, the comment lines directly above it (no blank line between) are used, joined by spaces.
    """
    source = textwrap.dedent(inspect.getsource(cls))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    comments: dict[str, str] = {}
    above: list[str] = []  # own-line comments directly above the next statement
    trailing: list[str] = []  # comments inside the current statement
    name = None  # the field the current statement defines, if any
    depth = 0  # 1 = the class body
    line_start = True
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.COMMENT:
            (above if line_start else trailing).append(tok.string.lstrip("#").strip())
        elif tok.type == tokenize.NL:
            if line_start and not tok.line.strip():  # a blank line: the comments above belong to nothing
                above = []
        elif tok.type == tokenize.NEWLINE:
            if name is not None:
                comments[name] = " ".join(trailing) or " ".join(above)
            name, trailing, above, line_start = None, [], [], True
        elif line_start and tok.type != tokenize.ENDMARKER:
            line_start = False
            after = tokens[i + 1] if i + 1 < len(tokens) else None
            # `name: type = ...` (a dataclass field) or `name = ...` (an enum member)
            if depth == 1 and tok.type == tokenize.NAME and after is not None and after.string in (":", "="):
                name = tok.string
    return comments


def unwrap_optional(hint) -> tuple[object, bool]:
    """(T, True) for Optional[T], else (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def type_name(hint) -> str:
    """`int`, `optional str`, `tuple[float, float]`, or an enum's values joined by ` | `."""
    inner, optional = unwrap_optional(hint)
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        name = " | ".join(member.value for member in inner)
    elif typing.get_origin(inner) is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(inner))
        name = f"{typing.get_origin(inner).__name__}[{args}]"
    else:
        name = inner.__name__
    return f"optional {name}" if optional else name


def default_text(value) -> str:
    """A default as it is written in a command-line override (`null`, `true`, `[0.9, 0.999]`)."""
    if value is None:
        return "null"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(default_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


def escape(text: str, cell: bool = True) -> str:
    """Make a comment safe as Markdown: `<` escaped outside code spans (`<run>` must not read as an
    HTML tag) and, in a table cell, `|` escaped everywhere (GFM reads it as a column break even in code)."""
    parts = text.split("`")
    for i, part in enumerate(parts):
        if cell:
            part = part.replace("|", "\\|")
        if i % 2 == 0:
            part = part.replace("<", "\\<")
        parts[i] = part
    return "`".join(parts)


@dataclasses.dataclass
class Key:
    key: str  # dotted, e.g. model.decoder.cell
    type: str
    default: str
    meaning: str
    choices: list[tuple[str, str]]  # (value, comment) of an enum-typed key


@dataclasses.dataclass
class Section:
    path: str  # dotted prefix ("" for the top-level keys)
    keys: list[Key]


def sections(cls: type = config.Config, instance=None, prefix: str = "") -> list[Section]:
    """Walk the dataclass tree depth-first: one Section per dataclass with leaf keys."""
    instance = cls() if instance is None else instance
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    own = Section(prefix, [])
    nested: list[Section] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        hint, value = hints[f.name], getattr(instance, f.name)
        if dataclasses.is_dataclass(hint):
            nested += sections(hint, value, key)
            continue
        inner, _ = unwrap_optional(hint)
        choices = []
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            member_comments = field_comments(inner)
            choices = [(m.value, member_comments.get(m.name, "")) for m in inner]
        own.keys.append(Key(key, type_name(hint), default_text(value), comments.get(f.name, ""), choices))
    return ([own] if own.keys else []) + nested


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def group_defaults() -> dict[str, str]:
    """The option each config group takes in the default composition (config.yaml's defaults list)."""
    main = yaml.safe_load((conf_dir() / "config.yaml").read_text(encoding="utf-8"))
    chosen = {}
    for entry in main.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                chosen[group] = option
    return chosen


def group_options(group: str) -> list[str]:
    folder = conf_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def section_source(group: str) -> str:
    """One paragraph: which Hydra config group or file sets this top-level section."""
    main = rel(conf_dir() / "config.yaml")
    if not group:
        return f"Set in `{main}`; override on the command line as `KEY=VALUE` (e.g. `seed=1`)."
    options = group_options(group)
    if options:
        default = group_defaults().get(group)
        listed = ", ".join(f"`{o}` (the default)" if o == default else f"`{o}`" for o in options)
        return (
            f"Set by the config group `{group}` (`{rel(conf_dir() / group)}/`): {listed}. "
            f"Pick one with `{group}=OPTION`, or set a single key with `{group}.KEY=VALUE`."
        )
    return (
        f"Set in the `{group}:` section of `{main}` (there is no `{group}` config group); "
        f"override a key with `{group}.KEY=VALUE`."
    )


def render_section(section: Section, level: int) -> list[str]:
    title = f"`{section.path}`" if section.path else "Top-level keys"
    lines = ["#" * level + " " + title, ""]
    group = section.path.split(".")[0]
    if "." not in section.path:
        lines += [section_source(group), ""]
    if section.path == "search":
        lines += [
            "`python -m s2s.translate` and `python -m s2s.evaluate` decode with the run's own "
            "`search` settings; `search.KEY=VALUE` changes them for that call.",
            "",
        ]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in section.keys:
        cells = [f"`{k.key}`", escape(k.type), f"`{escape(k.default)}`", escape(k.meaning)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for k in section.keys:
        if k.choices:
            lines.append(f"Choices of `{k.key}`:")
            lines.append("")
            lines += [f"- `{v}`: {escape(c, cell=False)}" if c else f"- `{v}`" for v, c in k.choices]
            lines.append("")
    return lines


def render() -> str:
    """The whole of docs/configuration.md, as text."""
    composition = ", ".join(f"{g}={o}" for g, o in group_defaults().items() if o is not None and group_options(g))
    recipes = ", ".join(f"`{r}`" for r in group_options("experiment"))
    lines = [
        "# Configuration reference",
        "",
        "Generated by scripts/config_reference.py from s2s/config.py; do not edit by hand. "
        f"Run `{REGENERATE}` after changing a field or its comment.",
        "",
        "Every option of s2s is a key of the typed config `s2s.config.Config`, listed below with its "
        "type, default and meaning. Set a key on the command line as `KEY=VALUE`, or pick a config "
        "group's option as `GROUP=OPTION`:",
        "",
        "```bash",
        "python -m s2s.train model.decoder.cell=gru",
        "python -m s2s.train model=base search=beam optim.lr=5e-4",
        "```",
        "",
        "The defaults shown are those of `python -m s2s.train` with no overrides: the dataclass "
        f"defaults equal the default composition of `{rel(conf_dir() / 'config.yaml')}` ({composition}). "
        "Another group option changes some of them (its YAML file says which), and so does a recipe, "
        f"`experiment=NAME` (in `{rel(conf_dir() / 'experiment')}/`: {recipes}). "
        "`python -m s2s.translate` and `python -m s2s.evaluate` take `search.KEY=VALUE` "
        "(e.g. `search.beam_size=5`).",
        "",
        "A key whose type lists values (`lstm | gru`) takes one of them; the choices are explained under each table.",
        "",
    ]
    all_sections = sections()
    top = [s for s in all_sections if not s.path]
    for section in [s for s in all_sections if s.path] + top:
        lines += render_section(section, level=2 if "." not in section.path else 3)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.config_reference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be written")
    parser.add_argument("--path", type=Path, default=DOC, help=f"the page to write or check (default: {rel(DOC)})")
    args = parser.parse_args(argv)
    path = args.path.resolve()
    text = render()
    if args.check:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            shown = rel(path) if path.is_relative_to(ROOT) else str(args.path)
            fix = REGENERATE if path == DOC else f"{REGENERATE} --path {args.path}"
            sys.exit(f"{shown} is stale: run {fix}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


if __name__ == "__main__":
    main()
