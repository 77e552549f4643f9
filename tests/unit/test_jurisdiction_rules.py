"""Resolution rules (docs/jurisdictions.md), on in-memory versions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agegate.jurisdictions.models import RuleStatus
from agegate.jurisdictions.rules import RuleTable, RuleVersion

T0 = datetime(2020, 1, 1, tzinfo=UTC)
IN_FORCE, PROPOSED, SUSPENDED = RuleStatus.IN_FORCE, RuleStatus.PROPOSED, RuleStatus.SUSPENDED


def version(
    code: str,
    version: int,
    age: int,
    effective: datetime,
    status: RuleStatus = IN_FORCE,
    *,
    retired: bool = False,
) -> RuleVersion:
    return RuleVersion(
        id=hash((code, version)) & 0xFFFF,
        code=code,
        version=version,
        minimum_age=age,
        effective_from=effective,
        status=status,
        citation=f"Test Act s. {version}",
        notes="",
        source_url="",
        retired=retired,
        changed_by="test",
        changed_at=T0,
        change_reason="test",
    )


def table(*versions: RuleVersion) -> RuleTable:
    return RuleTable.build(1, versions)


BASE = (version("default", 1, 13, T0), version("DE", 1, 16, T0), version("CA", 1, 13, T0))


def test_most_specific_in_force_rule_wins() -> None:
    t = table(*BASE, version("CA-QC", 1, 14, T0))
    at = T0 + timedelta(days=1)
    assert t.resolve("CA", "CA-QC", at).rule.minimum_age == 14  # type: ignore[union-attr]
    assert t.resolve("CA", "CA-QC", at).matched == "subdivision"
    assert t.resolve("CA", None, at).matched == "country"
    assert t.resolve("FR", None, at).matched == "default"
    assert t.resolve(None, None, at).rule.minimum_age == 13  # type: ignore[union-attr]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_result_does_not_depend_on_write_order(order: tuple[int, ...]) -> None:
    # Three versions of DE written in every order: the latest effective_from decides.
    contents = [(15, T0), (16, T0 + timedelta(days=10)), (17, T0 + timedelta(days=20))]
    versions = [version("DE", n + 1, *contents[i]) for n, i in enumerate(order)]
    t = table(version("default", 1, 13, T0), *versions)
    assert t.resolve("DE", None, T0 + timedelta(days=5)).rule.minimum_age == 15  # type: ignore[union-attr]
    assert t.resolve("DE", None, T0 + timedelta(days=15)).rule.minimum_age == 16  # type: ignore[union-attr]
    assert t.resolve("DE", None, T0 + timedelta(days=25)).rule.minimum_age == 17  # type: ignore[union-attr]


def test_same_instant_the_highest_version_wins() -> None:
    t = table(*BASE, version("DE", 2, 15, T0))
    assert t.resolve("DE", None, T0).rule.version == 2  # type: ignore[union-attr]


def test_a_rule_applies_from_its_exact_effective_instant() -> None:
    change = T0 + timedelta(days=30)
    t = table(*BASE, version("DE", 2, 18, change))
    assert t.resolve("DE", None, change - timedelta(microseconds=1)).rule.minimum_age == 16  # type: ignore[union-attr]
    assert t.resolve("DE", None, change).rule.minimum_age == 18  # type: ignore[union-attr]


def test_proposed_rules_never_apply_whatever_their_date() -> None:
    t = table(
        *BASE,
        version("DE", 2, 18, T0 - timedelta(days=1), PROPOSED),
        version("DE", 3, 19, T0 + timedelta(days=1), PROPOSED),
    )
    for days in (-2, 0, 2, 400):
        assert t.resolve("DE", None, T0 + timedelta(days=days)).rule in (None, BASE[1])
    assert t.resolve("DE", None, T0 + timedelta(days=2)).rule.minimum_age == 16  # type: ignore[union-attr]


def test_a_suspended_rule_falls_back_to_the_next_level() -> None:
    suspended_from = T0 + timedelta(days=10)
    t = table(
        *BASE,
        version("US", 1, 13, T0),
        version("US-FL", 1, 16, T0),
        version("US-FL", 2, 16, suspended_from, SUSPENDED),
    )
    before = t.resolve("US", "US-FL", T0 + timedelta(days=1))
    assert (before.matched, before.rule.minimum_age) == ("subdivision", 16)  # type: ignore[union-attr]
    after = t.resolve("US", "US-FL", suspended_from)
    assert after.matched == "country" and after.rule.minimum_age == 13  # type: ignore[union-attr]
    assert [s.outcome for s in after.steps] == ["suspended", "applied"]


def test_a_suspended_country_without_default_rule_gives_no_rule() -> None:
    t = table(version("DE", 1, 16, T0, SUSPENDED))
    resolution = t.resolve("DE", None, T0)
    assert resolution.rule is None and resolution.matched is None
    assert [s.outcome for s in resolution.steps] == ["suspended", "no_rule"]


def test_future_rules_take_over_by_themselves() -> None:
    later = T0 + timedelta(days=365)
    t = table(*BASE, version("DE", 2, 18, later))
    history = t.history("DE")
    assert history.in_force(T0 + timedelta(days=1)).minimum_age == 16  # type: ignore[union-attr]
    assert [v.minimum_age for v in history.scheduled(T0 + timedelta(days=1))] == [18]
    assert history.in_force(later).minimum_age == 18  # type: ignore[union-attr]
    assert history.scheduled(later) == []


def test_retirement_cancels_current_and_scheduled_versions() -> None:
    retire_at = T0 + timedelta(days=10)
    t = table(
        *BASE,
        version("DE", 2, 18, T0 + timedelta(days=100)),
        version("DE", 3, 16, retire_at, retired=True),
    )
    assert t.resolve("DE", None, T0 + timedelta(days=1)).rule.minimum_age == 16  # type: ignore[union-attr]
    for days in (10, 100, 200):
        resolution = t.resolve("DE", None, T0 + timedelta(days=days))
        assert resolution.matched == "default"
        assert resolution.steps[0].outcome == "retired"
    assert t.history("DE").live(retire_at) == []
    # A version added after the retirement brings the code back.
    revived = table(
        *t.history("DE").versions, *BASE[::2], version("DE", 4, 15, T0 + timedelta(days=50))
    )
    assert revived.resolve("DE", None, T0 + timedelta(days=60)).rule.minimum_age == 15  # type: ignore[union-attr]


def test_live_versions_are_current_scheduled_and_proposals() -> None:
    now = T0 + timedelta(days=50)
    t = table(
        version("DE", 1, 14, T0),  # superseded by version 2 (same instant)
        version("DE", 2, 15, T0),  # overtaken by version 3
        version("DE", 3, 16, T0 + timedelta(days=40)),  # current
        version("DE", 4, 18, T0 + timedelta(days=60)),  # scheduled
        version("DE", 5, 17, T0 - timedelta(days=5), PROPOSED),  # tracked proposal
    )
    assert [v.version for v in t.history("DE").live(now)] == [5, 3, 4]


def test_in_force_at_lists_codes_with_default_first() -> None:
    t = table(*BASE, version("AT", 1, 14, T0), version("CH", 1, 13, T0, SUSPENDED))
    assert [r.code for r in t.in_force_at(T0)] == ["default", "AT", "CA", "DE"]


_INSTANTS = [T0 + timedelta(days=d) for d in range(6)]
_versions = st.lists(
    st.tuples(
        st.sampled_from(["default", "CA", "CA-QC"]),
        st.sampled_from(_INSTANTS),
        st.sampled_from([IN_FORCE, PROPOSED, SUSPENDED]),
        st.booleans(),
        st.integers(min_value=13, max_value=25),
    ),
    max_size=12,
)
_asked = st.lists(
    st.tuples(
        st.sampled_from(_INSTANTS),
        st.sampled_from([-timedelta(microseconds=1), timedelta(0), timedelta(hours=1)]),
        st.sampled_from([("CA", "CA-QC"), ("CA", None), (None, None), ("FR", None)]),
    ),
    min_size=1,
    max_size=12,
)


@settings(deadline=None)  # a busy shared machine can be slow on one example
@given(_versions, _asked)
def test_a_kept_resolution_is_the_one_worked_out_afresh(
    raw: list[tuple[str, datetime, RuleStatus, bool, int]],
    asked: list[tuple[datetime, timedelta, tuple[str | None, str | None]]],
) -> None:
    # One table answers a sequence of questions in any order of time (keeping answers per
    # place); each answer must equal a fresh table's, which keeps nothing yet.
    counters: dict[str, int] = {}
    versions = []
    for code, effective, status, retired, age in raw:
        counters[code] = counters.get(code, 0) + 1
        versions.append(version(code, counters[code], age, effective, status, retired=retired))
    kept = table(*versions)
    for instant, offset, (country, subdivision) in asked:
        at = instant + offset
        assert kept.resolve(country, subdivision, at) == table(*versions).resolve(
            country, subdivision, at
        )
