"""Resolution over an in-memory copy of the table: pure functions, no database, no Flask.

Per code, at an instant t (docs/jurisdictions.md, "Versions and resolution"):
- versions with effective_from ≤ t take part, proposed ones never do;
- the latest effective_from, then the highest version, decides;
- a suspended decisive version means the code has no rule at t (fall back a level);
- a retirement (DELETE) is a version that decides like any other and, once in effect,
  cancels every lower version, scheduled ones included: the code has no rule until legal
  adds a new version.
A version is *superseded* when a higher version has the same effective_from and is as
proposed as it is (both proposed, or both not): it was a correction of that version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agegate.jurisdictions.models import DEFAULT_CODE, JurisdictionRule, RuleStatus

LEVELS = ("subdivision", "country", "default")
MAX_KEPT_PLACES = 4096
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def rule_content(rule: Any) -> tuple[Any, ...]:
    """The fields that make two rules the same, whatever the object (a version or an input)."""
    return (
        rule.minimum_age,
        rule.effective_from,
        rule.status,
        rule.citation,
        rule.notes,
        rule.source_url,
    )


@dataclass(frozen=True)
class RuleVersion:
    """An immutable snapshot of one version row, safe to share between threads."""

    id: int
    code: str
    version: int
    minimum_age: int
    effective_from: datetime
    status: RuleStatus
    citation: str
    notes: str
    source_url: str
    retired: bool
    changed_by: str
    changed_at: datetime
    change_reason: str

    @classmethod
    def of(cls, row: JurisdictionRule) -> RuleVersion:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    @property
    def proposed(self) -> bool:
        return self.status is RuleStatus.PROPOSED and not self.retired

    def content(self) -> tuple[Any, ...]:
        """What makes two versions the same rule (import treats equal content as a no-op)."""
        return rule_content(self)


@dataclass(frozen=True)
class CodeHistory:
    code: str
    versions: tuple[RuleVersion, ...]  # ascending version

    def _floor(self, at: datetime) -> int:
        retirements = [v.version for v in self.versions if v.retired and v.effective_from <= at]
        return max(retirements, default=0)

    def decisive(self, at: datetime) -> RuleVersion | None:
        """The version that decides for this code at `at` (it may be suspended or a retirement)."""
        floor = self._floor(at)
        candidates = [
            v
            for v in self.versions
            if v.effective_from <= at and not v.proposed and v.version >= floor
        ]
        return max(candidates, key=lambda v: (v.effective_from, v.version), default=None)

    def in_force(self, at: datetime) -> RuleVersion | None:
        """The rule that applies for this code at `at`, if any."""
        version = self.decisive(at)
        if version is None or version.retired or version.status is not RuleStatus.IN_FORCE:
            return None
        return version

    def live(self, now: datetime) -> list[RuleVersion]:
        """The versions that still mean something now: the decisive one, scheduled ones and
        proposals. This is what export writes and what import compares against."""
        floor = self._floor(now)
        latest: dict[tuple[datetime, bool], RuleVersion] = {}
        for v in self.versions:
            if v.version >= floor and not v.retired:
                latest[(v.effective_from, v.proposed)] = v
        decisive = self.decisive(now)
        keep = [
            v
            for v in latest.values()
            if v.proposed
            or v.effective_from > now
            or (decisive is not None and not decisive.retired and v is decisive)
        ]
        return sorted(keep, key=lambda v: (v.effective_from, v.version))

    def scheduled(self, now: datetime) -> list[RuleVersion]:
        return [v for v in self.live(now) if v.effective_from > now]


@dataclass(frozen=True)
class Step:
    level: str
    code: str
    outcome: str  # applied, no_rule, suspended, retired
    version: RuleVersion | None = None


@dataclass(frozen=True)
class Resolution:
    rule: RuleVersion | None
    matched: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class RuleTable:
    """Every version of every code, as of one database revision."""

    revision: int
    histories: dict[str, CodeHistory] = field(default_factory=dict)
    # place → (resolution, from, until): see resolve(). Not part of the table's value.
    _resolved: dict[tuple[str | None, str | None], tuple[Resolution, datetime, datetime]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def build(cls, revision: int, versions: Iterable[RuleVersion]) -> RuleTable:
        by_code: dict[str, list[RuleVersion]] = {}
        for v in versions:
            by_code.setdefault(v.code, []).append(v)
        return cls(
            revision,
            {
                code: CodeHistory(code, tuple(sorted(vs, key=lambda v: v.version)))
                for code, vs in by_code.items()
            },
        )

    def history(self, code: str) -> CodeHistory:
        return self.histories.get(code) or CodeHistory(code, ())

    def resolve(self, country: str | None, subdivision: str | None, at: datetime) -> Resolution:
        """The most specific rule in force at `at`, with every level that was looked at."""
        # Each age check resolves its place at the current instant, and the answer only
        # changes where one of the place's codes has a version taking effect: it is kept per
        # place with the span of instants between two such changes, where it holds.
        place = (country, subdivision)
        kept = self._resolved.get(place)
        if kept is not None and kept[1] <= at < kept[2]:
            return kept[0]
        resolution = self._resolve(country, subdivision, at)
        if len(self._resolved) < MAX_KEPT_PLACES:
            codes = [code for code in (subdivision, country, DEFAULT_CODE) if code is not None]
            changes = [v.effective_from for code in codes for v in self.history(code).versions]
            since = max((c for c in changes if c <= at), default=_EARLIEST)
            until = min((c for c in changes if c > at), default=_LATEST)
            self._resolved[place] = (resolution, since, until)
        return resolution

    def _resolve(self, country: str | None, subdivision: str | None, at: datetime) -> Resolution:
        steps: list[Step] = []
        for level, code in zip(LEVELS, (subdivision, country, DEFAULT_CODE), strict=True):
            if code is None:
                continue
            decisive = self.history(code).decisive(at)
            if decisive is None:
                steps.append(Step(level, code, "no_rule"))
            elif decisive.retired:
                steps.append(Step(level, code, "retired", decisive))
            elif decisive.status is RuleStatus.SUSPENDED:
                steps.append(Step(level, code, "suspended", decisive))
            else:
                steps.append(Step(level, code, "applied", decisive))
                return Resolution(decisive, level, tuple(steps))
        return Resolution(None, None, tuple(steps))

    def in_force_at(self, at: datetime) -> Sequence[RuleVersion]:
        """Every code's rule in force at `at`, ordered by code (`default` first)."""
        rules = [r for h in self.histories.values() if (r := h.in_force(at)) is not None]
        return sorted(rules, key=lambda r: (r.code != DEFAULT_CODE, r.code))

    def codes(self) -> list[str]:
        return sorted(self.histories, key=lambda c: (c != DEFAULT_CODE, c))
