"""Reading Prometheus' text format back: a scrape as {(sample name, labels): value}."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from shared.config import Settings
from tests.support.app import client_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by its name and its labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; a KeyError naming the series when the scrape lacks it."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise KeyError(f"no {name}{labels} in the scrape")
    return samples[key]


def scrape(settings: Settings) -> Samples:
    """GET /metrics of an app on these settings (in this process, on their store and broker)."""
    response = client_for(settings).get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))
