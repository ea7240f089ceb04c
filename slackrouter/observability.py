"""Metrics (Prometheus, served at /metrics) and structured logs (logfmt: key=value pairs).

Logs: every line is `time=… level=… logger=… [team=…] [conversation=…] msg="…"`. The workspace
and conversation ids come from `log_context`/`bind_log_context`, set where the work starts (a
Slack request, an outbox item, a visitor message). Visitor and rep text is never logged at INFO,
and anything shaped like a Slack token is replaced by `[redacted]` as a last line of defence.

Metrics live in the app's own registry (`REGISTRY`), not the process-wide default one.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# --- metrics ----------------------------------------------------------------------------------

REGISTRY = CollectorRegistry(auto_describe=True)

CHATS_RECEIVED = Counter(
    "slackrouter_chats_received", "New chats: a visitor's first message", registry=REGISTRY
)
CHATS_ROUTED = Counter(
    "slackrouter_chats_routed", "New chats offered to available reps", registry=REGISTRY
)
CHATS_AWAY = Counter(
    "slackrouter_chats_away", "New chats nobody could take (the visitor saw the away message)",
    registry=REGISTRY,
)
CHATS_EMAILED = Counter(
    "slackrouter_chats_emailed", "Chats emailed to an owner or the offline fallback",
    registry=REGISTRY,
)
VISITOR_MESSAGES = Counter(
    "slackrouter_visitor_messages", "Visitor messages stored (duplicates not counted)",
    registry=REGISTRY,
)
REPLIES_RELAYED = Counter(
    "slackrouter_replies_relayed", "Reps' thread replies relayed to visitors", registry=REGISTRY
)
DELIVERY_RETRIES = Counter(
    "slackrouter_delivery_retries",
    "Outbox deliveries that failed and will be tried again, by kind",
    ["kind"],
    registry=REGISTRY,
)
DELIVERY_FAILURES = Counter(
    "slackrouter_delivery_failures",
    "Outbox deliveries given up for good, by kind",
    ["kind"],
    registry=REGISTRY,
)
SLACK_CALLS = Counter(
    "slackrouter_slack_api_calls",
    "Slack Web API calls, by method and outcome (ok or Slack's error)",
    ["method", "outcome"],
    registry=REGISTRY,
)
SLACK_LATENCY = Histogram(
    "slackrouter_slack_api_call_seconds",
    "Slack Web API call latency, retries included, by method",
    ["method"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)


def chat_started(outcome: str) -> None:
    """Count a new chat and how it was routed (`routed`, or nobody available)."""
    CHATS_RECEIVED.inc()
    (CHATS_ROUTED if outcome == "routed" else CHATS_AWAY).inc()


def observe_slack_call(method: str, outcome: str, seconds: float) -> None:
    SLACK_CALLS.labels(method=method, outcome=outcome).inc()
    SLACK_LATENCY.labels(method=method).observe(seconds)


def render_metrics(queue_depth: Mapping[str, int], others: Iterable[str] = ()) -> bytes:
    """The Prometheus text: the app's counters (this process's, and those of its other
    processes in `others`, added up), and the outbox's pending rows by kind (queue depth),
    measured by the caller at scrape time."""
    scrape = CollectorRegistry()
    gauge = Gauge(
        "slackrouter_outbox_pending",
        "Queue depth: outbox rows (Slack posts, emails, webhooks) waiting to be delivered",
        ["kind"],
        registry=scrape,
    )
    for kind in ("post_parent", "post_reply", "email", "webhook", *queue_depth):
        gauge.labels(kind=kind).set(queue_depth.get(kind, 0))
    return merged_metrics(generate_latest(REGISTRY).decode(), *others) + generate_latest(scrape)


def merged_metrics(*texts: str) -> bytes:
    """Prometheus texts of several processes of one app as one: samples with the same name and
    labels are added up (counters, histogram buckets, sums and counts), `_created` takes the
    earliest."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, family)  # the first's name, type and help
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in samples:
                    samples[key] = sample.value
                elif sample.name.endswith("_created"):
                    samples[key] = min(samples[key], sample.value)
                else:
                    samples[key] += sample.value

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            for name, family in families.items():
                out = Metric(family.name, family.documentation, family.type, family.unit)
                for (sample_name, labels), value in values[name].items():
                    out.add_sample(sample_name, dict(labels), value)
                yield out

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())  # type: ignore[arg-type]
    return generate_latest(registry)



# --- logs -------------------------------------------------------------------------------------

_CONTEXT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "slackrouter_log_context", default=MappingProxyType({})
)
CONTEXT_KEYS = ("team", "conversation")
_SECRET = re.compile(r"\b(?:xox[abposre](?:\.xox[a-z])?-|xapp-)[A-Za-z0-9.\-]+")


def _merged(fields: Mapping[str, Any]) -> dict[str, str]:
    """The current context with `fields` set; a None or empty value removes its field."""
    merged = dict(_CONTEXT.get())
    for key, value in fields.items():
        if value:
            merged[key] = str(value)
        else:
            merged.pop(key, None)
    return merged


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `team=…`, `conversation=…` to every log line written inside the block."""
    token = _CONTEXT.set(_merged(fields))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Set fields on the log lines of the rest of the current task (a request, a listener, the
    item a worker is on); None removes one."""
    _CONTEXT.set(_merged(fields))


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """`time=2026-01-01T12:00:00.000Z level=info logger=… team=T… conversation=… msg="…"`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        context = getattr(record, "slackrouter_context", None) or {}
        fields.update({key: context[key] for key in CONTEXT_KEYS if key in context})
        fields["msg"] = record.getMessage()
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return redact(" ".join(f"{key}={_quote(value)}" for key, value in fields.items()))


_factory_installed = False


def _install_record_factory() -> None:
    """Stamp each record with the log context of the task that wrote it."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.slackrouter_context = _CONTEXT.get()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


_handler: logging.Handler | None = None


def installed_handler() -> logging.Handler | None:
    """The handler `configure_logging` installed, if it did."""
    return _handler


def remove_logging() -> None:
    """Take away the handler `configure_logging` installed."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None


def configure_logging(level: str, stream: IO[str] | None = None) -> logging.Handler:
    """Log to stderr (or `stream`) in logfmt at `level`, replacing the handler an earlier call
    added; returns the handler."""
    global _handler
    _install_record_factory()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(level)
    # Chatter at INFO; slack_sdk logs request bodies at DEBUG, which only DEBUG shows.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a dozen plugin lines per start
    logging.getLogger("httpx").setLevel(logging.WARNING)  # URLs may carry secrets
    for name in ("slack_sdk", "slack_bolt"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return handler
