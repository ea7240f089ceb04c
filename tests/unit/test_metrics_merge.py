"""The app's /metrics adds up the samples of its processes (the web server's and the delivery
process's): counters and histograms summed by name and labels, `_created` the earliest."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from slackrouter.observability import merged_metrics


def process_metrics(posts: int, emails: int, latencies: list[float]) -> str:
    """One process's Prometheus text with these counts."""
    registry = CollectorRegistry()
    calls = Counter("calls", "Slack calls", ["method"], registry=registry)
    calls.labels(method="chat.postMessage").inc(posts)
    if emails:
        Counter("emails", "Emails sent", registry=registry).inc(emails)
    latency = Histogram("latency_seconds", "Latency", buckets=(0.1, 1), registry=registry)
    for seconds in latencies:
        latency.observe(seconds)
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_processes_samples_are_added_up() -> None:
    web = process_metrics(posts=0, emails=0, latencies=[0.05])
    delivery = process_metrics(posts=7, emails=2, latencies=[0.05, 0.5, 3.0])
    merged = samples(merged_metrics(web, delivery).decode())
    assert merged[("calls_total", (("method", "chat.postMessage"),))] == 7
    assert merged[("emails_total", ())] == 2  # only one process has it
    assert merged[("latency_seconds_count", ())] == 4
    assert merged[("latency_seconds_bucket", (("le", "0.1"),))] == 2
    assert merged[("latency_seconds_bucket", (("le", "1.0"),))] == 3
    assert merged[("latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert merged[("latency_seconds_sum", ())] == pytest.approx(0.05 + 0.05 + 0.5 + 3.0)
    created = [samples(web)[("calls_created", (("method", "chat.postMessage"),))]]
    created.append(samples(delivery)[("calls_created", (("method", "chat.postMessage"),))])
    assert merged[("calls_created", (("method", "chat.postMessage"),))] == min(created)


def test_one_process_reads_as_itself() -> None:
    alone = process_metrics(posts=3, emails=1, latencies=[0.2])
    assert samples(merged_metrics(alone).decode()) == samples(alone)
