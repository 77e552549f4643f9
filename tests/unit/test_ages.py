"""Age arithmetic, pinned by examples and by properties against an independent formulation."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agegate.age_checks import ages


def reference_age(birth: date, today: date) -> int:
    """Independent formulation: count the birthdays that have begun by `today`.

    The n-th birthday falls on the same month and day n years later; a 29 February birthday
    falls on 1 March in a year that has no 29 February.
    """
    n = 0
    while True:
        year = birth.year + n + 1
        try:
            anniversary = date(year, birth.month, birth.day)
        except ValueError:
            anniversary = date(year, 3, 1)
        if anniversary > today:
            return n
        n += 1


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)),
    today=st.dates(min_value=date(1900, 1, 1), max_value=date(2035, 12, 31)),
)
def test_age_matches_the_reference(birth: date, today: date) -> None:
    if birth > today:
        return
    assert ages.age_on(birth, today) == reference_age(birth, today)


@given(year=st.integers(1904, 2024).filter(calendar.isleap), later=st.integers(1, 30))
def test_leap_day_birthdays_are_reached_on_1_march_in_common_years(year: int, later: int) -> None:
    birth = date(year, 2, 29)
    target = year + later
    if calendar.isleap(target):
        assert ages.age_on(birth, date(target, 2, 28)) == later - 1
        assert ages.age_on(birth, date(target, 2, 29)) == later
    else:
        assert ages.age_on(birth, date(target, 2, 28)) == later - 1
        assert ages.age_on(birth, date(target, 3, 1)) == later


@given(
    year=st.integers(1900, 2020),
    month=st.integers(1, 12),
    today=st.dates(min_value=date(2021, 1, 1), max_value=date(2030, 12, 31)),
)
def test_partial_dates_mean_the_youngest_possible_person(
    year: int, month: int, today: date
) -> None:
    by_month = ages.parse_birth_date(f"{year}-{month:02d}", today)
    by_year = ages.parse_birth_date(str(year), today)
    last_day = calendar.monthrange(year, month)[1]
    assert by_month.birth == date(year, month, last_day)
    assert by_year.birth == date(year, 12, 31)
    # No full date in that month (or year) gives a younger age.
    for day in (1, last_day):
        assert ages.age_on(date(year, month, day), today) >= ages.age_on(by_month.birth, today)
    assert ages.age_on(date(year, 1, 1), today) >= ages.age_on(by_year.birth, today)


def test_today_is_the_date_at_utc_minus_12() -> None:
    # 11:59 UTC is still the previous day at UTC-12; 12:00 UTC is the new day everywhere.
    assert ages.today_everywhere(datetime(2026, 3, 2, 11, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert ages.today_everywhere(datetime(2026, 3, 2, 12, 0, tzinfo=UTC)) == date(2026, 3, 2)


@given(
    instant=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
)
def test_no_place_on_earth_is_behind_the_date_used(instant: datetime) -> None:
    used = ages.today_everywhere(instant)
    for hours in range(-12, 15):
        local = instant.astimezone(timezone(timedelta(hours=hours))).date()
        assert used <= local


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("2030-01-01", "date_of_birth_in_future"),
        ("1899-12-31", "date_of_birth_before_1900"),
        ("2013-02-29", "date_of_birth_impossible"),
        ("2013-13-01", "date_of_birth_impossible"),
        ("2013-00", "date_of_birth_impossible"),
        ("2013-04-31", "date_of_birth_impossible"),
        ("2013-02-01T00:00:00Z", "date_of_birth_is_timestamp"),
        ("2013-02-01 10:00", "date_of_birth_is_timestamp"),
        ("2013/02/01", "date_of_birth_malformed"),
        ("01-02-2013", "date_of_birth_malformed"),
        ("2013-2-1", "date_of_birth_malformed"),
        ("", "date_of_birth_malformed"),
        ("twenty", "date_of_birth_malformed"),
        (
            "\uff12\uff10\uff11\uff13-\uff10\uff12-\uff10\uff11",
            "date_of_birth_malformed",
        ),  # full-width digits
    ],
)
def test_bad_dates_have_stable_codes_and_never_echo(text: str, code: str) -> None:
    with pytest.raises(ages.BirthDateError) as caught:
        ages.parse_birth_date(text, date(2026, 11, 29))
    assert caught.value.code == code
    if text:
        assert text not in str(caught.value)


def test_older_than_130_years_is_refused() -> None:
    with pytest.raises(ages.BirthDateError) as caught:
        ages.parse_birth_date("1902-06-01", date(2035, 1, 1))
    assert caught.value.code == "date_of_birth_too_old"
    assert ages.parse_birth_date("1905-06-01", date(2035, 1, 1)).birth == date(1905, 6, 1)
