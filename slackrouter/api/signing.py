"""Server-to-server calls from the site's backend: HMAC-SHA256 over a timestamp and the raw body,
with the chatflow's signing secret, in the same shape as Slack's own request signing."""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Slackrouter-Timestamp"
SIGNATURE_HEADER = "X-Slackrouter-Signature"
WINDOW_SECONDS = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of `v1:{timestamp}:{body}`."""
    base = b"v1:" + timestamp.encode() + b":" + body
    return "v1=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
) -> str | None:
    """None when the call is genuine; otherwise why not."""
    if not timestamp or not signature:
        return f"both {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are needed"
    try:
        sent = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} must be Unix seconds"
    current = time.time() if now is None else now
    if abs(current - sent) > WINDOW_SECONDS:
        return "timestamp is outside the 5-minute window"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "signature does not match"
    return None
