"""Rules in files: parse CSV or JSON rows into validated rules (all or none), write CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import marshmallow as ma

from agegate.errors import ValidationError
from agegate.jurisdictions import codes
from agegate.jurisdictions.rules import RuleVersion
from agegate.jurisdictions.schemas import ImportRowArgs, format_instant
from agegate.jurisdictions.service import RuleInput

COLUMNS = ("code", "minimum_age", "effective_from", "status", "citation", "notes", "source_url")
_REQUIRED = {"code", "minimum_age", "effective_from", "status", "citation"}


def read_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header row; unknown or missing columns are an error."""
    # newline="" leaves line endings to the csv module, which knows \r, \n and \r\n alike.
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        rows = list(reader)
    except csv.Error as exc:
        raise ValidationError(
            "the CSV file is malformed", errors={"file": [str(exc)]}, code="import_rejected"
        ) from None
    missing = sorted(_REQUIRED - set(header))
    unknown = sorted(set(header) - set(COLUMNS))
    problems = [f"missing column {c!r}" for c in missing] + [
        f"unknown column {c!r}" for c in unknown
    ]
    if problems:
        raise ValidationError(
            "the CSV header is not usable", errors={"header": problems}, code="import_rejected"
        )
    for row in rows:
        if None in row:
            row["_extra"] = row.pop(None)
        if isinstance(row.get("minimum_age"), str) and row["minimum_age"].strip().isdigit():
            row["minimum_age"] = int(row["minimum_age"])
        for name in ("notes", "source_url"):
            if row.get(name) is None:
                row[name] = ""
    return rows


def parse_rules(rows: Sequence[Mapping[str, Any]]) -> list[RuleInput]:
    """Validate every row; one bad row rejects the file with a report of every bad row."""
    errors: dict[str, list[str]] = {}
    rules: list[RuleInput] = []
    seen: dict[tuple[Any, ...], int] = {}
    schema = ImportRowArgs()
    for number, raw in enumerate(rows, start=1):
        row_errors: dict[str, list[str]] = {}
        if not isinstance(raw, Mapping):
            errors[f"rows.{number}"] = ["must be an object with the rule's fields"]
            continue
        if "_extra" in raw:
            row_errors["_row"] = ["has more values than the header has columns"]
        try:
            data = schema.load({k: v for k, v in raw.items() if k != "_extra"})
        except ma.ValidationError as exc:
            messages = exc.normalized_messages()
            for name, field_messages in messages.items():
                row_errors.setdefault(str(name), []).extend(_as_list(field_messages))
            data = None
        if data is not None:
            try:
                data["code"] = codes.normalize(data["code"])
            except codes.CodeError as exc:
                row_errors.setdefault("code", []).append(str(exc))
        if data is not None and not row_errors:
            rule = RuleInput(**data)
            key = (rule.code, rule.effective_from, rule.status.value == "proposed")
            if key in seen:
                row_errors["effective_from"] = [
                    f"row {seen[key]} already gives {rule.code} a rule from this instant"
                ]
            seen.setdefault(key, number)
            rules.append(rule)
        for name, messages in row_errors.items():
            errors[f"rows.{number}.{name}"] = messages
    if errors:
        bad = len({key.split(".")[1] for key in errors})
        raise ValidationError(
            f"{bad} of {len(rows)} rows are invalid; nothing was imported",
            errors=errors,
            code="import_rejected",
        )
    return rules


def write_csv(versions: Iterable[RuleVersion]) -> str:
    """The rules as CSV in the import columns (export re-imports to the same table)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for v in versions:
        writer.writerow(
            [
                v.code,
                v.minimum_age,
                format_instant(v.effective_from),
                v.status.value,
                v.citation,
                v.notes,
                v.source_url,
            ]
        )
    return out.getvalue()


def _as_list(messages: Any) -> list[str]:
    if isinstance(messages, list):
        return [str(m) for m in messages]
    if isinstance(messages, dict):
        return [f"{k}: {m}" for k, ms in messages.items() for m in _as_list(ms)]
    return [str(messages)]
