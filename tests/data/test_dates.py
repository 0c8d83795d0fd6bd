"""Tests for the embedded date-normalization task (s2s.data.dates)."""

from __future__ import annotations

import datetime
import re

import pytest

from s2s.data.dates import make_date_splits

SMALL = dict(train_size=3000, valid_size=200, test_size=1000)

EN_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[str, str]]]:
    return make_date_splits(seed=0, **SMALL)


def all_pairs(splits: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return [pair for split in splits.values() for pair in split]


def test_keys_and_sizes(splits):
    assert set(splits) == {"train", "valid", "test"}
    assert len(splits["train"]) == SMALL["train_size"]
    assert len(splits["valid"]) == SMALL["valid_size"]
    assert len(splits["test"]) == SMALL["test_size"]


def test_default_sizes():
    out = make_date_splits()
    assert [len(out[k]) for k in ("train", "valid", "test")] == [20000, 500, 1000]


def test_deterministic_for_seed(splits):
    assert make_date_splits(seed=0, **SMALL) == splits
    assert make_date_splits(seed=1, **SMALL) != splits


def test_does_not_use_global_rng():
    import random

    random.seed(123)
    before = random.random()
    random.seed(123)
    make_date_splits(seed=0, **SMALL)
    assert random.random() == before


def test_days_disjoint_across_splits(splits):
    days = {k: {t for _, t in v} for k, v in splits.items()}
    assert not days["train"] & days["valid"]
    assert not days["train"] & days["test"]
    assert not days["valid"] & days["test"]
    # Valid and test hold exactly one example per day.
    assert len(days["valid"]) == SMALL["valid_size"]
    assert len(days["test"]) == SMALL["test_size"]


def test_targets_are_iso_dates_in_range(splits):
    for _, target in all_pairs(splits):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target)
        d = datetime.date.fromisoformat(target)
        assert 1900 <= d.year <= 2099


def test_sources_short_and_contain_year(splits):
    for source, target in all_pairs(splits):
        assert 0 < len(source) < 40
        # Years are always four digits, so the target year appears verbatim.
        assert target[:4] in source


def test_numeric_sources_round_trip(splits):
    checked = 0
    for source, target in all_pairs(splits):
        d = datetime.date.fromisoformat(target)
        if m := re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", source):
            day, month, year = map(int, m.groups())
        elif m := re.fullmatch(r"(\d{4})/(\d{2})/(\d{2})", source):
            year, month, day = map(int, m.groups())
        elif m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", source):
            year, month, day = map(int, m.groups())
        else:
            continue
        assert datetime.date(year, month, day) == d, source
        checked += 1
    assert checked > 100


def test_english_month_name_round_trip(splits):
    # Independent parse of "March 3, 1998" / "Mar 3, 1998" style sources.
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    checked = 0
    pattern = r"(?:[A-Za-z]+, )?([A-Za-z]+) (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})"
    for source, target in all_pairs(splits):
        m = re.fullmatch(pattern, source)
        if not m or m.group(1)[:3].lower() not in months:
            continue
        month = months.index(m.group(1)[:3].lower()) + 1
        got = datetime.date(int(m.group(3)), month, int(m.group(2)))
        assert got == datetime.date.fromisoformat(target), source
        checked += 1
    assert checked > 100


def test_english_weekday_is_real(splits):
    checked = 0
    for source, target in all_pairs(splits):
        weekday = datetime.date.fromisoformat(target).weekday()
        for i, name in enumerate(EN_WEEKDAYS):
            if source.startswith(name) or source.startswith(name[:3] + " "):
                assert i == weekday, source
                checked += 1
    assert checked > 50


def test_french_first_of_month(splits):
    for source, target in all_pairs(splits):
        if re.search(r"\b1er\b", source):
            assert target.endswith("-01"), source


def test_many_distinct_formats(splits):
    shapes = {re.sub(r"[^\W\d_]", "a", re.sub(r"\d", "9", s)) for s, _ in all_pairs(splits)}
    assert len(shapes) >= 15
    text = " ".join(s for s, _ in all_pairs(splits))
    for word in ("März", "mars", "de marzo de", "1er"):
        assert word in text


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(train_size=-1),
        dict(valid_size=-1),
        dict(test_size=-1),
        dict(test_size=80000),
        dict(test_size=73049 - 500, valid_size=500, train_size=1),
    ],
)
def test_invalid_sizes_raise(kwargs):
    with pytest.raises(ValueError):
        make_date_splits(**kwargs)


def test_train_larger_than_pool_is_allowed():
    out = make_date_splits(seed=0, train_size=50, valid_size=0, test_size=73049 - 10)
    assert len(out["train"]) == 50
    assert len({t for _, t in out["train"]}) == 10
