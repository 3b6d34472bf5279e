"""Toy task: human-readable dates -> ISO dates (``YYYY-MM-DD``).

Everything is generated deterministically from a seed with the standard
library only; each file is written atomically. Every source format is unambiguous: numeric formats are told
apart by their separator (``.`` = day.month.year, ``/`` = US month/day/year,
``-`` with the year first = ISO order, 8 digits = YYYYMMDD), so each source
string maps to exactly one date.

CLI: ``python -m nmt.data.dates OUT_DIR [--seed N] [--sizes train=N,dev=N,test=N]
[--formats NAME,... | --without NAME,...]`` (formats by the names in FORMATS: a parent model
that never saw some formats, and data to fine-tune it on them, docs/fine_tuning.md).
"""

from __future__ import annotations

import argparse
import datetime
import random
from collections.abc import Callable
from pathlib import Path

from nmt.errors import DataError
from nmt.files import atomic_write

# Hard-coded English names (``calendar.month_name`` depends on the locale).
MONTHS = (
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
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

FIRST_DAY = datetime.date(1900, 1, 1)
LAST_DAY = datetime.date(2099, 12, 31)
SPLITS = ("train", "dev", "test")
DEFAULT_SIZES = {"train": 20000, "dev": 500, "test": 1000}

Format = Callable[[datetime.date, random.Random], str]


def _case(word: str, rng: random.Random) -> str:
    """Return ``word`` in lower, Title or UPPER case, chosen by ``rng``."""
    return rng.choice((word.lower(), word.title(), word.upper()))


def _name(full: str, rng: random.Random, abbr: bool | None = None) -> str:
    """Full or 3-letter name (random if ``abbr`` is None), in a random case."""
    if abbr is None:
        abbr = rng.random() < 0.5
    return _case(full[:3] if abbr else full, rng)


def _month(d: datetime.date, rng: random.Random, abbr: bool | None = None) -> str:
    return _name(MONTHS[d.month - 1], rng, abbr)


def _weekday(d: datetime.date, rng: random.Random, abbr: bool | None = None) -> str:
    return _name(WEEKDAYS[d.weekday()], rng, abbr)


def ordinal(n: int) -> str:
    """English ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, ..."""
    if 11 <= n % 100 <= 13:
        return f"{n}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def day_month_year(d: datetime.date, rng: random.Random) -> str:
    """'3 May 1979', '12 MAR 1991'."""
    return f"{d.day} {_month(d, rng)} {d.year}"


def dd_month_year(d: datetime.date, rng: random.Random) -> str:
    """'03 May 1979'."""
    return f"{d.day:02d} {_month(d, rng)} {d.year}"


def month_day_comma_year(d: datetime.date, rng: random.Random) -> str:
    """'May 3, 1979', 'Mar 12, 1991'."""
    return f"{_month(d, rng)} {d.day}, {d.year}"


def weekday_month_day_year(d: datetime.date, rng: random.Random) -> str:
    """'Tuesday, March 12 1991'."""
    return f"{_weekday(d, rng)}, {_month(d, rng)} {d.day} {d.year}"


def wd_day_mon_year(d: datetime.date, rng: random.Random) -> str:
    """'tue 12 mar 1991' (abbreviated weekday and month)."""
    return f"{_weekday(d, rng, True)} {d.day} {_month(d, rng, True)} {d.year}"


def month_ordinal_year(d: datetime.date, rng: random.Random) -> str:
    """'march 12th 1991'."""
    return f"{_month(d, rng)} {ordinal(d.day)} {d.year}"


def the_ordinal_of_month(d: datetime.date, rng: random.Random) -> str:
    """'the 12th of March, 1991'."""
    return f"the {ordinal(d.day)} of {_month(d, rng)}, {d.year}"


def dotted_dmy(d: datetime.date, rng: random.Random) -> str:
    """'12.03.1991' (dots = day.month.year)."""
    return f"{d.day:02d}.{d.month:02d}.{d.year}"


def slashed_mdy(d: datetime.date, rng: random.Random) -> str:
    """'03/12/1991' (slashes = US month/day/year)."""
    return f"{d.month:02d}/{d.day:02d}/{d.year}"


def iso_unpadded(d: datetime.date, rng: random.Random) -> str:
    """'1991-3-12'."""
    return f"{d.year}-{d.month}-{d.day}"


def iso_padded(d: datetime.date, rng: random.Random) -> str:
    """'1991-03-12'."""
    return d.isoformat()


def day_mon_year_dashed(d: datetime.date, rng: random.Random) -> str:
    """'12-Mar-1991'."""
    return f"{d.day:02d}-{_month(d, rng, True)}-{d.year}"


def compact(d: datetime.date, rng: random.Random) -> str:
    """'19910312'."""
    return f"{d.year}{d.month:02d}{d.day:02d}"


FORMATS: tuple[Format, ...] = (
    day_month_year,
    dd_month_year,
    month_day_comma_year,
    weekday_month_day_year,
    wd_day_mon_year,
    month_ordinal_year,
    the_ordinal_of_month,
    dotted_dmy,
    slashed_mdy,
    iso_unpadded,
    iso_padded,
    day_mon_year_dashed,
    compact,
)


def random_date(rng: random.Random) -> datetime.date:
    """A date drawn uniformly from 1900-01-01 .. 2099-12-31."""
    return datetime.date.fromordinal(rng.randint(FIRST_DAY.toordinal(), LAST_DAY.toordinal()))


def make_example(rng: random.Random, formats: tuple[Format, ...] = FORMATS) -> tuple[str, str]:
    """One (source, target) pair: a random date in a random one of `formats` -> ISO."""
    d = random_date(rng)
    return rng.choice(formats)(d, rng), d.isoformat()


def generate(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` examples (duplicates possible), a pure function of ``seed``."""
    rng = random.Random(seed)
    return [make_example(rng) for _ in range(n)]


def formats_named(names: list[str], without: bool = False) -> tuple[Format, ...]:
    """The FORMATS of these names (or all but them); a ValueError names an unknown one."""
    known = {f.__name__: f for f in FORMATS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"no date format {unknown[0]!r} (the formats: {', '.join(known)})")
    chosen = tuple(f for f in FORMATS if (f.__name__ in names) != without)
    if not chosen:
        raise ValueError("no date format left to write")
    return chosen


def write_splits(
    out_dir: str | Path,
    seed: int = 1234,
    sizes: dict | None = None,
    only_missing: bool = False,
    formats: tuple[Format, ...] = FORMATS,
) -> None:
    """Write ``{train,dev,test}.{src,tgt}`` under ``out_dir``, each file atomically (a kill
    leaves it whole or absent); ``only_missing``: write only the files that do not exist (an
    existing one, generated before or the user's own, is never rewritten).

    Sources are unique across all splits (test is filled first, then dev,
    then train), so the splits are disjoint by source string. The output is
    byte-identical for a given seed, sizes and formats.
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    if set(sizes) != set(SPLITS) or any(v < 0 for v in sizes.values()):
        raise ValueError(f"sizes must give non-negative counts for {SPLITS}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the dates data folder ({e.strerror})") from None
    for split in ("test", "dev", "train"):
        pairs: list[tuple[str, str]] = []
        attempts = 0
        while len(pairs) < sizes[split]:
            attempts += 1
            if attempts > 100 * sizes[split] + 1000:
                raise RuntimeError("could not draw enough unique sources")
            src, tgt = make_example(rng, formats)
            if src not in seen:
                seen.add(src)
                pairs.append((src, tgt))
        for side, idx in (("src", 0), ("tgt", 1)):
            path = out / f"{split}.{side}"
            if not (only_missing and path.exists()):
                _write_atomically(path, "".join(p[idx] + "\n" for p in pairs).encode("utf-8"))


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None


def ensure_dates_data(out_dir: str | Path, seed: int = 1234) -> None:
    """Write the default splits' files that do not exist yet; never rewrite one that does."""
    out = Path(out_dir)
    if not all((out / f"{s}.{side}").exists() for s in SPLITS for side in ("src", "tgt")):
        write_splits(out, seed=seed, only_missing=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory for the six split files")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--sizes", default="", help="pairs per split, e.g. train=3000,dev=200,test=500")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--formats", default="", help="only these formats, e.g. slashed_mdy,compact")
    choice.add_argument("--without", default="", help="every format but these")
    args = parser.parse_args(argv)
    names = [name for name in (args.formats or args.without).split(",") if name]
    try:
        formats = formats_named(names, without=bool(args.without)) if names else FORMATS
        sizes = {key: int(count) for key, count in (item.split("=") for item in args.sizes.split(",") if item)}
        write_splits(args.out_dir, seed=args.seed, sizes=sizes, formats=formats)
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()
