"""Embedded default task: human-written dates -> ISO dates.

The task needs no downloads: every example is generated in code. A source is a
date written the way people write it, in one of many formats and in English,
German, French or Spanish (``3 March 1998``, ``Tuesday, March 3, 1998``,
``03.03.1998``, ``Dienstag, 3. März 1998``, ``mardi 3 mars 1998``,
``3 de marzo de 1998``, ``1998/03/03``, ...). The target is the same date as
``YYYY-MM-DD``.

Every source determines exactly one date, so the task is learnable to 100%:

* years are always written with four digits (1900-2099);
* all-numeric formats are either day-first (``DD.MM.YYYY``) or year-first
  (``YYYY/MM/DD``, ``YYYYMMDD``); there is no month-first ``MM/DD/YYYY``, which
  would collide with day-first for days <= 12;
* month names never clash across languages (``mar`` is March in every one);
* weekday names, when present, are the real weekday of the date.

Splits are made over calendar days: test, valid and train use disjoint days,
so the test set measures generalization to dates never seen in training.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

FIRST_DAY = datetime.date(1900, 1, 1)
LAST_DAY = datetime.date(2099, 12, 31)

# Month and weekday names, index 0 = January / Monday (as date.weekday()).
_EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_EN_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_DE_MONTHS = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
]
_DE_WEEKDAYS = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]
_FR_MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]
_FR_WEEKDAYS = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
_ES_MONTHS = [
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
]
_ES_WEEKDAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]


def _en_month(d: datetime.date) -> str:
    return _EN_MONTHS[d.month - 1]


def _en_mon(d: datetime.date) -> str:
    # English three-letter abbreviations ("Mar", "Sep").
    return _en_month(d)[:3]


def _en_weekday(d: datetime.date) -> str:
    return _EN_WEEKDAYS[d.weekday()]


def _en_ordinal(day: int) -> str:
    # 11th-13th are the exceptions to the 1st/2nd/3rd rule.
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _de_month(d: datetime.date) -> str:
    return _DE_MONTHS[d.month - 1]


def _de_weekday(d: datetime.date) -> str:
    return _DE_WEEKDAYS[d.weekday()]


def _fr_day(d: datetime.date) -> str:
    # French writes the first of the month as an ordinal: "1er mars".
    return "1er" if d.day == 1 else str(d.day)


def _fr_month(d: datetime.date) -> str:
    return _FR_MONTHS[d.month - 1]


def _fr_weekday(d: datetime.date) -> str:
    return _FR_WEEKDAYS[d.weekday()]


def _es_month(d: datetime.date) -> str:
    return _ES_MONTHS[d.month - 1]


def _es_weekday(d: datetime.date) -> str:
    return _ES_WEEKDAYS[d.weekday()]


Formatter = Callable[[datetime.date], str]

# Each entry renders a date in one human format. Keep every rendering under
# 40 characters and unambiguous (see the module docstring).
_FORMATS: list[Formatter] = [
    # English
    lambda d: f"{d.day} {_en_month(d)} {d.year}",  # 3 March 1998
    lambda d: f"{_en_month(d)} {d.day}, {d.year}",  # March 3, 1998
    lambda d: f"{_en_mon(d)} {d.day}, {d.year}",  # Mar 3, 1998
    lambda d: f"{_en_ordinal(d.day)} of {_en_month(d)} {d.year}",  # 3rd of March 1998
    lambda d: f"{_en_month(d)} {_en_ordinal(d.day)}, {d.year}",  # March 3rd, 1998
    lambda d: f"{_en_weekday(d)}, {_en_month(d)} {d.day}, {d.year}",  # Tuesday, March 3, 1998
    lambda d: f"{_en_weekday(d)[:3]} {d.day} {_en_mon(d)} {d.year}",  # Tue 3 Mar 1998
    lambda d: f"{d.day} {_en_mon(d).upper()} {d.year}",  # 3 MAR 1998
    lambda d: f"{d.day:02d}-{_en_mon(d)}-{d.year}",  # 03-Mar-1998
    lambda d: f"{_en_month(d).lower()} {d.day} {d.year}",  # march 3 1998
    lambda d: f"{d.day} {_en_mon(d).lower()} {d.year}",  # 3 mar 1998
    # Numeric: only day-first or year-first, never month-first.
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",  # 03.03.1998
    lambda d: f"{d.day}.{d.month}.{d.year}",  # 3.3.1998
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",  # 1998/03/03
    lambda d: f"{d.year}{d.month:02d}{d.day:02d}",  # 19980303
    # German
    lambda d: f"{d.day}. {_de_month(d)} {d.year}",  # 3. März 1998
    lambda d: f"{_de_weekday(d)}, {d.day}. {_de_month(d)} {d.year}",  # Dienstag, 3. März 1998
    lambda d: f"am {d.day}. {_de_month(d)} {d.year}",  # am 3. März 1998
    lambda d: f"{d.day:02d}. {_de_month(d).lower()} {d.year}",  # 03. märz 1998
    # French
    lambda d: f"{_fr_day(d)} {_fr_month(d)} {d.year}",  # 3 mars 1998
    lambda d: f"{_fr_weekday(d)} {_fr_day(d)} {_fr_month(d)} {d.year}",  # mardi 3 mars 1998
    lambda d: f"le {_fr_day(d)} {_fr_month(d)} {d.year}",  # le 3 mars 1998
    lambda d: f"{_fr_day(d)} {_fr_month(d).upper()} {d.year}",  # 3 MARS 1998
    # Spanish
    lambda d: f"{d.day} de {_es_month(d)} de {d.year}",  # 3 de marzo de 1998
    lambda d: f"{_es_weekday(d)}, {d.day} de {_es_month(d)} de {d.year}",  # martes, 3 de ...
    lambda d: f"el {d.day} de {_es_month(d)} de {d.year}",  # el 3 de marzo de 1998
    lambda d: f"{d.day} {_es_month(d)} {d.year}",  # 3 marzo 1998
]


def _render(d: datetime.date, rng: random.Random) -> str:
    """Write ``d`` in a format chosen with ``rng``."""
    return rng.choice(_FORMATS)(d)


def _all_days() -> list[datetime.date]:
    n_days = (LAST_DAY - FIRST_DAY).days + 1
    return [FIRST_DAY + datetime.timedelta(days=i) for i in range(n_days)]


def _check_sizes(train_size: int, valid_size: int, test_size: int, n_days: int) -> None:
    sizes = {"train_size": train_size, "valid_size": valid_size, "test_size": test_size}
    for name, value in sizes.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if test_size + valid_size > n_days:
        raise ValueError(
            f"test_size + valid_size = {test_size + valid_size} exceeds the "
            f"{n_days} days between {FIRST_DAY} and {LAST_DAY}"
        )
    if train_size > 0 and test_size + valid_size == n_days:
        raise ValueError(
            f"no days left for train: test_size + valid_size uses all {n_days} days between {FIRST_DAY} and {LAST_DAY}"
        )


def _sample_days(pool: list[datetime.date], n: int, rng: random.Random) -> list[datetime.date]:
    # Draw without replacement so train covers as many distinct days as
    # possible; only when n exceeds the pool does a day come back (with a
    # fresh random format, so a repeat is usually a new example).
    days: list[datetime.date] = []
    while len(days) < n:
        days.extend(rng.sample(pool, min(n - len(days), len(pool))))
    return days


def _examples(days: list[datetime.date], rng: random.Random) -> list[tuple[str, str]]:
    return [(_render(d, rng), d.isoformat()) for d in days]


def make_date_splits(
    seed: int = 0, train_size: int = 20000, valid_size: int = 500, test_size: int = 1000
) -> dict[str, list[tuple[str, str]]]:
    """Return {"train": [...], "valid": [...], "test": [...]} of (source, iso_target) pairs.

    The calendar days of the three splits are disjoint: after a seeded shuffle
    of all days, test takes the first ``test_size``, valid the next
    ``valid_size``, and train samples ``train_size`` examples from the rest.
    Valid and test hold one example per day. The output depends only on the
    arguments (a private ``random.Random(seed)``; the global RNG is untouched).
    """
    days = _all_days()
    _check_sizes(train_size, valid_size, test_size, len(days))
    rng = random.Random(seed)
    rng.shuffle(days)
    test_days = days[:test_size]
    valid_days = days[test_size : test_size + valid_size]
    train_pool = days[test_size + valid_size :]
    return {
        "train": _examples(_sample_days(train_pool, train_size, rng), rng),
        "valid": _examples(valid_days, rng),
        "test": _examples(test_days, rng),
    }
