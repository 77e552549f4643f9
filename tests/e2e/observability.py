"""What on-call sees after the run: /metrics adds up the web and worker processes, and every
log line is JSON that carries no birth date, key or evidence."""

from __future__ import annotations

import json
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Services, expect, ok


def _sample(families: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample, have, value in families
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def metrics_add_up(services: Services, completed: int, neutral_retries: int) -> None:
    """The receipts the two worker processes signed show up in gunicorn's /metrics (one
    multiprocess directory on this machine), and agree with the cases the database holds."""
    status, text = services.http("GET", "/metrics")
    expect(status == 200 and isinstance(text, str), f"/metrics: {status}")
    samples = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    signed = _sample(samples, "agegate_receipts_signed_total")
    in_db = _sample(samples, "agegate_cases", state="completed")
    expect(signed == in_db == completed, f"receipts signed {signed}, completed cases {in_db}")
    hits = _sample(samples, "agegate_lockout_hits_total")
    denied = _sample(
        samples, "agegate_age_checks_total", reason="prior_underage_declaration", jurisdiction="DE"
    )
    expect(hits == denied == neutral_retries, f"lockout hits {hits}, such denials {denied}")
    invalid = _sample(
        samples, "agegate_http_requests_total", endpoint="/v1/age-checks", status="422"
    )
    expect(invalid == 5, f"422s counted for /v1/age-checks: {invalid}")
    ok(
        f"/metrics: {completed:g} receipts signed by the workers = completed cases; "
        f"{hits:g} lockout hits; 5 bad age checks counted"
    )


def logs_are_clean(services: Services, secrets: Iterable[str]) -> None:
    """Every line each process wrote is one JSON object, and none carries a secret."""
    secrets = [s for s in secrets if s]
    lines = 0
    for process in services.processes:
        for number, line in enumerate(process.log.read_text().splitlines(), 1):
            try:
                json.loads(line)
            except ValueError:
                expect(False, f"{process.name}.log line {number} is not JSON: {line[:200]}")
            for secret in secrets:
                expect(secret not in line, f"{process.name}.log line {number} carries a secret")
            lines += 1
    names = ", ".join(p.name for p in services.processes)
    ok(f"{lines} log lines of {names}: all JSON, no birth date, key or evidence")
