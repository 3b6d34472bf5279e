"""Tests for nmt.data.dates: every format parses back to its date."""

from __future__ import annotations

import datetime
import random
import re
from pathlib import Path

import pytest

from nmt.data import dates

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SUFFIX = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}

MON = r"(?P<mon>[A-Za-z]+)"
WD = r"(?P<wd>[A-Za-z]+)"
D = r"(?P<d>[1-9]|[12]\d|3[01])"  # unpadded day
DD = r"(?P<d>0[1-9]|[12]\d|3[01])"  # zero-padded day
MM = r"(?P<m>0[1-9]|1[0-2])"
M = r"(?P<m>[1-9]|1[0-2])"
Y = r"(?P<y>\d{4})"
ORD = r"(?P<d>\d{1,2})(?P<suf>st|nd|rd|th)"

# Independent reference parsers, one per format function name.
PATTERNS = {
    "day_month_year": rf"{D} {MON} {Y}",
    "dd_month_year": rf"{DD} {MON} {Y}",
    "month_day_comma_year": rf"{MON} {D}, {Y}",
    "weekday_month_day_year": rf"{WD}, {MON} {D} {Y}",
    "wd_day_mon_year": rf"{WD} {D} {MON} {Y}",
    "month_ordinal_year": rf"{MON} {ORD} {Y}",
    "the_ordinal_of_month": rf"the {ORD} of {MON}, {Y}",
    "dotted_dmy": rf"{DD}\.{MM}\.{Y}",
    "slashed_mdy": rf"{MM}/{DD}/{Y}",
    "iso_unpadded": rf"{Y}-{M}-{D}",
    "iso_padded": rf"{Y}-{MM}-{DD}",
    "day_mon_year_dashed": rf"{DD}-{MON}-{Y}",
    "compact": rf"{Y}{MM}{DD}",
}
ABBREV_ONLY = {"wd_day_mon_year", "day_mon_year_dashed"}


def _name_index(word: str, names: list[str], abbrev_only: bool) -> int:
    """Index of a full or 3-letter name in lower/Title/UPPER case."""
    assert word in (word.lower(), word.title(), word.upper()), word
    w = word.lower()
    allowed = [n[:3] for n in names] if abbrev_only else names + [n[:3] for n in names]
    assert w in allowed, word
    return allowed.index(w) % len(names)


def parse(fmt_name: str, s: str) -> datetime.date | None:
    """Parse ``s`` as format ``fmt_name``; None if it does not match."""
    m = re.fullmatch(PATTERNS[fmt_name], s)
    if m is None:
        return None
    g = m.groupdict()
    abbr = fmt_name in ABBREV_ONLY
    month = _name_index(g["mon"], MONTHS, abbr) + 1 if g.get("mon") else int(g["m"])
    day = int(g["d"])
    if g.get("suf"):
        assert g["suf"] == SUFFIX.get(day, "th"), s
    try:
        d = datetime.date(int(g["y"]), month, day)
    except ValueError:
        return None
    if g.get("wd"):
        assert _name_index(g["wd"], WEEKDAYS, abbr) == d.weekday(), s
    return d


def test_patterns_cover_formats() -> None:
    assert sorted(PATTERNS) == sorted(f.__name__ for f in dates.FORMATS)


@pytest.mark.parametrize("fmt", dates.FORMATS, ids=lambda f: f.__name__)
def test_format_round_trips(fmt) -> None:
    rng = random.Random(7)
    days = [dates.random_date(rng) for _ in range(400)]
    days += [
        datetime.date(2000, 2, 29),
        datetime.date(1900, 1, 1),
        datetime.date(2099, 12, 31),
        datetime.date(1991, 3, 12),
    ]
    days += [datetime.date(1991, 1, n) for n in range(1, 32)]
    for d in days:
        s = fmt(d, rng)
        assert parse(fmt.__name__, s) == d, (fmt.__name__, s, d)


def test_examples_from_brief() -> None:
    rng = random.Random(0)
    d = datetime.date(1991, 3, 12)
    assert dates.dotted_dmy(d, rng) == "12.03.1991"
    assert dates.slashed_mdy(d, rng) == "03/12/1991"
    assert dates.iso_unpadded(d, rng) == "1991-3-12"
    assert dates.compact(d, rng) == "19910312"
    assert dates.dd_month_year(datetime.date(1979, 5, 3), rng).lower() == "03 may 1979"
    assert dates.weekday_month_day_year(d, rng).lower() in {
        f"{w}, {m} 12 1991" for w in ("tuesday", "tue") for m in ("march", "mar")
    }
    got = [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31, 111)]
    assert got == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st", "111th"]


def test_case_and_abbreviation_variants() -> None:
    rng = random.Random(3)
    d = datetime.date(1991, 3, 12)
    seen = {dates.day_month_year(d, rng).split()[1] for _ in range(200)}
    assert seen == {"march", "March", "MARCH", "mar", "Mar", "MAR"}


def test_generated_examples_valid_and_unambiguous() -> None:
    data = dates.generate(3000, seed=11)
    assert len(data) == 3000
    hits = {name: 0 for name in PATTERNS}
    years = set()
    for src, tgt in data:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", tgt)
        d = datetime.date.fromisoformat(tgt)
        assert 1900 <= d.year <= 2099
        years.add(d.year)
        parsed = {name: parse(name, src) for name in PATTERNS}
        matched = {name: p for name, p in parsed.items() if p is not None}
        assert matched, src
        # Unambiguous: every format that accepts the string gives the same date.
        assert set(matched.values()) == {d}, (src, matched)
        for name in matched:
            hits[name] += 1
    assert all(hits.values()), hits
    assert len(years) > 150


def test_generate_deterministic() -> None:
    assert dates.generate(200, seed=5) == dates.generate(200, seed=5)
    assert dates.generate(200, seed=5) != dates.generate(200, seed=6)


def _read(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8")
    assert "\r" not in text and text.endswith("\n")
    return text.split("\n")[:-1]


def test_write_splits(tmp_path: Path) -> None:
    sizes = {"train": 2000, "dev": 100, "test": 200}
    dates.write_splits(tmp_path / "a", seed=9, sizes=sizes)
    srcs = {}
    for split, n in sizes.items():
        src = _read(tmp_path / "a" / f"{split}.src")
        tgt = _read(tmp_path / "a" / f"{split}.tgt")
        assert len(src) == len(tgt) == n
        assert len(set(src)) == n
        for s, t in zip(src, tgt):
            assert datetime.date.fromisoformat(t) in {parse(name, s) for name in PATTERNS}
        srcs[split] = set(src)
    assert not srcs["train"] & srcs["dev"]
    assert not srcs["train"] & srcs["test"]
    assert not srcs["dev"] & srcs["test"]

    # Byte-identical on rerun; different seed gives different data.
    dates.write_splits(tmp_path / "b", seed=9, sizes=sizes)
    dates.write_splits(tmp_path / "c", seed=10, sizes=sizes)
    for name in ("train.src", "train.tgt", "dev.src", "test.tgt"):
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes()
        assert a != (tmp_path / "c" / name).read_bytes()


def test_ensure_dates_data(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = dates.write_splits
    monkeypatch.setattr(
        dates,
        "write_splits",
        lambda out, **kw: (
            calls.append(out)
            or real(out, seed=kw.get("seed", 1234), sizes={"train": 50, "dev": 5, "test": 5}, **kw_missing(kw))
        ),
    )
    dates.ensure_dates_data(tmp_path)
    assert len(calls) == 1
    assert len(_read(tmp_path / "train.src")) == 50
    dates.ensure_dates_data(tmp_path)  # all present: no rewrite
    assert len(calls) == 1
    (tmp_path / "dev.tgt").unlink()
    dates.ensure_dates_data(tmp_path)  # one missing: rewrite
    assert len(calls) == 2 and (tmp_path / "dev.tgt").exists()


def kw_missing(kw: dict) -> dict:
    return {"only_missing": kw["only_missing"]} if "only_missing" in kw else {}


SMALL = {"train": 50, "dev": 5, "test": 5}


def test_generating_never_rewrites_an_existing_file(tmp_path: Path, monkeypatch) -> None:
    """data.generate: dates writes only the files that are missing: a file of the user's stays."""
    real = dates.write_splits
    monkeypatch.setattr(
        dates, "write_splits", lambda out, **kw: real(out, seed=kw["seed"], sizes=SMALL, **kw_missing(kw))
    )
    dates.write_splits(tmp_path / "ref", seed=1234)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "test.src").write_text("my own test sources\n")
    dates.ensure_dates_data(tmp_path / "out")
    assert (tmp_path / "out" / "test.src").read_text() == "my own test sources\n"
    for name in ("test.tgt", "dev.src", "dev.tgt", "train.src", "train.tgt"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_a_kill_while_generating_leaves_whole_files_or_none(tmp_path: Path, monkeypatch) -> None:
    """Each file is written atomically: a write cut short (here the third, half-way) leaves no
    truncated file that would count as present; the next run writes the rest."""
    from nmt import files

    calls = []

    def killed_on_the_third(path, write):
        calls.append(path)
        if len(calls) < 3:
            return files.atomic_write(path, write)

        def half(f):
            f.write(b"2001-01-0")
            raise KeyboardInterrupt  # as a kill -9 would stop it

        return files.atomic_write(path, half)

    dates.write_splits(tmp_path / "ref", seed=1234, sizes=SMALL)
    monkeypatch.setattr(dates, "atomic_write", killed_on_the_third, raising=False)
    with pytest.raises(KeyboardInterrupt):
        dates.write_splits(tmp_path / "out", seed=1234, sizes=SMALL, only_missing=True)
    monkeypatch.undo()
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["test.src", "test.tgt"]  # the third (dev.src) is absent, not torn
    dates.write_splits(tmp_path / "out", seed=1234, sizes=SMALL, only_missing=True)
    for name in sorted(p.name for p in (tmp_path / "ref").iterdir()):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_default_sizes_and_cli(tmp_path: Path) -> None:
    dates.main([str(tmp_path), "--seed", "3"])
    counts = {s: len(_read(tmp_path / f"{s}.src")) for s in dates.SPLITS}
    assert counts == {"train": 20000, "dev": 500, "test": 1000}
