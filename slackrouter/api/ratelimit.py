"""Per-IP and per-visitor request limits for the visitor API (in this process)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `limit` hits per key in any `window` seconds; memory is bounded by `max_keys`."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float:
        """Count a hit: 0 when allowed, else the seconds until the next one would be."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._forget_idle(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        if len(hits) >= self._limit:
            return hits[0] + self._window - now
        hits.append(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self._window]:
            del self._hits[key]
        if len(self._hits) >= self._max_keys:
            self._hits.clear()  # under a flood of new keys, forget rather than grow
