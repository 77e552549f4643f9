"""Prometheus metrics, correct under several gunicorn workers.

Counters and histograms live in the process that counts. Under gunicorn (and whenever
`PROMETHEUS_MULTIPROC_DIR` is set before agegate starts) prometheus_client's multiprocess
mode keeps them in files that `/metrics` adds up across every process that shares the
directory: all gunicorn workers, the embedded worker thread, and `agegate worker` processes on
the same machine given the same directory. A worker on another machine serves its own with
`agegate worker --metrics-bind`.

Gauges of the workflow (cases by state, the oldest due work) are read from the database at
scrape time, so every process reports the same truth whoever did the work.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from agegate.db import SQLITE_BEGIN, utcnow
from agegate.remediation.models import Case, CaseState

HTTP_REQUESTS = Counter(
    "agegate_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "agegate_http_request_duration_seconds",
    "Time from the request reaching the application to its response, by route template.",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AGE_CHECKS = Counter(
    "agegate_age_checks",
    "Age checks answered, by outcome, reason and the jurisdiction code whose rule decided.",
    ["outcome", "reason", "jurisdiction"],
)
LOCKOUT_HITS = Counter(
    "agegate_lockout_hits",
    "Age checks denied because the session or account declared an underage date before.",
)
PURGE_ATTEMPTS = Counter(
    "agegate_purge_attempts",
    "Purge steps run against a target (one per claim of a case's target).",
    ["target"],
)
PURGE_FAILURES = Counter(
    "agegate_purge_failures",
    "Purge steps that failed, by target and exception type.",
    ["target", "error"],
)
PURGED_ITEMS = Counter(
    "agegate_purged_items",
    "Items purged, by target (rows, files, object versions, keys, as the target counts).",
    ["target"],
)
CASES_FAILED = Counter(
    "agegate_cases_failed",
    "Cases that reached `failed`, by the target that made them fail.",
    ["target"],
)
STEP_FAILURES = Counter(
    "agegate_step_failures",
    "Workflow steps that raised an unexpected error, by the case's state and the exception type.",
    ["state", "error"],
)
LEASE_RECLAIMS = Counter(
    "agegate_lease_reclaims",
    "Cases taken over from a worker whose lease expired (it died or stalled).",
)
LEASES_LOST = Counter(
    "agegate_leases_lost",
    "Steps stopped at a write because another worker had taken the case over.",
)
RECEIPTS_SIGNED = Counter(
    "agegate_receipts_signed",
    "Receipts signed, by signing key id.",
    ["kid"],
)


@functools.lru_cache(maxsize=8192)
def labelled(metric: Counter | Histogram, *values: str) -> Any:
    """metric.labels(*values), kept: the hot paths (every request, every age check) ask for
    the same few children again and again, and labels() validates and looks them up under a
    lock each time. Children are never removed, so a kept one stays the metric's own."""
    return metric.labels(*values)


class WorkflowCollector(Collector):
    """Cases by state and the age of the oldest due work, read from the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "agegate_metrics_database_up", "1 when the database answered this scrape."
        )
        try:
            by_state, oldest_due = self._read(utcnow())
        except Exception:  # a scrape must answer even when the database does not
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        cases = GaugeMetricFamily("agegate_cases", "Cases by state.", labels=["state"])
        for state in CaseState:
            cases.add_metric([state.value], by_state.get(state, 0))
        yield cases
        yield GaugeMetricFamily(
            "agegate_oldest_due_work_seconds",
            "How long the oldest case that is due (and not leased) has waited; 0 when none.",
            value=oldest_due,
        )

    def _read(self, now: datetime) -> tuple[dict[CaseState, int], float]:
        with self._engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            rows = conn.execute(select(Case.state, func.count()).group_by(Case.state)).all()
            due = conn.scalar(select(func.min(Case.next_run_at)).where(*Case.due(now)))
        waited = (now - due).total_seconds() if due is not None else 0.0
        return {state: count for state, count in rows}, max(waited, 0.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Everything(Collector):
    """This process's metrics (or, in multiprocess mode, every process's) and the workflow's."""

    def __init__(self, engine: Engine) -> None:
        self._workflow = WorkflowCollector(engine)

    def collect(self) -> Iterator[Metric]:
        if multiprocess_dir():
            yield from multiprocess.MultiProcessCollector(None).collect()
        else:
            yield from REGISTRY.collect()
        yield from self._workflow.collect()


def registry(engine: Engine) -> CollectorRegistry:
    """What `/metrics` and `agegate worker --metrics-bind` serve."""
    everything = CollectorRegistry(auto_describe=False)
    everything.register(_Everything(engine))
    return everything


def exposition(engine: Engine) -> bytes:
    return generate_latest(registry(engine))
