"""Reading Prometheus text the way a scraper does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` whose labels include `labels`, summed over the rest
    (0 when there is none: a counter that was never incremented has no sample)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def grown(before: str, after: str, name: str, **labels: str) -> float:
    """How much the sample grew between two scrapes."""
    return sample(after, name, **labels) - sample(before, name, **labels)
