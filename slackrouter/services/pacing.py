"""Pace Slack posts to Slack's limits: about one message per second per channel, short bursts
allowed. A post that would exceed it waits in the outbox instead of drawing a 429."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ChannelPacer:
    """A token bucket per channel (in this process), a little under Slack's rate so that timing
    jitter does not draw 429s."""

    def __init__(
        self,
        *,
        per_second: float = 0.95,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, channel: str) -> float:
        """Take a post's token: 0 when it may go now, else the seconds to wait (nothing taken)."""
        now = self._clock()
        bucket = self._buckets.setdefault(channel, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self._rate
