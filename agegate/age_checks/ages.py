"""Age arithmetic on calendar dates (docs/age-checks.md). Pure functions: no clock, no I/O.

- Today is the date at UTC-12, the last place on Earth to reach a date, so nobody passes
  before their birthday has begun everywhere.
- A 29 February birthday is reached on 1 March in common years.
- A partial date means the youngest possible person: `YYYY` → 31 December, `YYYY-MM` →
  the last day of that month.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

LATEST_ZONE = timezone(timedelta(hours=-12))
EARLIEST_BIRTH_YEAR = 1900
MAX_AGE_YEARS = 130
RECORDED_AGE_CAP = 21
# Days per month in a common year (calendar.monthrange also works out the weekday, unused).
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# ASCII digits only: \d would also take other scripts' digits (e.g. the full-width digits of U+FF10..U+FF19).
_FULL = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_YEAR = re.compile(r"([0-9]{4})")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


class BirthDateError(ValueError):
    """A declared birth date that cannot be used; `code` is stable, the message never echoes it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Declared(NamedTuple):
    """A declared birth date, resolved to the youngest person it can describe."""

    birth: date
    precision: str  # day, month, year


def today_everywhere(now: datetime) -> date:
    """The calendar date at UTC-12 at the instant `now`."""
    return now.astimezone(LATEST_ZONE).date()


def parse_birth_date(text: str, today: date) -> Declared:
    """`YYYY-MM-DD`, `YYYY-MM` or `YYYY` → the youngest possible birth date, validated."""
    if _TIMESTAMP.match(text):
        raise BirthDateError(
            "date_of_birth_is_timestamp", "send a date (YYYY-MM-DD), not a timestamp"
        )
    declared = _parse(text)
    if declared.birth.year < EARLIEST_BIRTH_YEAR:
        raise BirthDateError(
            "date_of_birth_before_1900", "a date of birth before 1900 is not accepted"
        )
    if declared.birth > today:
        raise BirthDateError("date_of_birth_in_future", "the date of birth is in the future")
    if age_on(declared.birth, today) > MAX_AGE_YEARS:
        raise BirthDateError(
            "date_of_birth_too_old", f"a person older than {MAX_AGE_YEARS} years is not accepted"
        )
    return declared


def _parse(text: str) -> Declared:
    if match := _FULL.fullmatch(text):
        year, month, day = map(int, match.groups())
        return Declared(_youngest(year, month, day, "day"), "day")
    if match := _MONTH.fullmatch(text):
        year, month = map(int, match.groups())
        return Declared(_youngest(year, month, 0, "month"), "month")
    if match := _YEAR.fullmatch(text):
        return Declared(_youngest(int(match.group(1)), 0, 0, "year"), "year")
    raise BirthDateError(
        "date_of_birth_malformed", "use YYYY-MM-DD, or YYYY-MM or YYYY when the day is not known"
    )


def _youngest(year: int, month: int, day: int, precision: str) -> date:
    if year < 1 or (precision != "year" and not 1 <= month <= 12):
        raise BirthDateError("date_of_birth_impossible", "no such date")
    if precision == "year":
        return date(year, 12, 31)
    last_day = _DAYS_IN_MONTH[month] + (month == 2 and calendar.isleap(year))
    if precision == "month":
        return date(year, month, last_day)
    if not 1 <= day <= last_day:
        raise BirthDateError("date_of_birth_impossible", "no such date")
    return date(year, month, day)


def birthday_in(birth: date, year: int) -> date:
    """The date in `year` on which someone born on `birth` has their birthday."""
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
        return date(year, 3, 1)
    return birth.replace(year=year)


def age_on(birth: date, today: date) -> int:
    """Whole years completed on `today`."""
    years = today.year - birth.year
    return years if birthday_in(birth, today.year) <= today else years - 1
