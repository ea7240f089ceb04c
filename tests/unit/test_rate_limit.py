"""The visitor API's sliding-window limiter."""

from __future__ import annotations

from slackrouter.api.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [0, 0, 0]
    clock.now += 10
    assert limiter.hit("a") == 50
    assert limiter.hit("b") == 0


def test_the_window_slides() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 60, clock=clock)
    limiter.hit("a")
    clock.now += 30
    limiter.hit("a")
    clock.now += 31
    assert limiter.hit("a") == 0
    assert limiter.hit("a") > 0


def test_memory_stays_bounded_under_many_keys() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 60, max_keys=100, clock=clock)
    for n in range(1000):
        limiter.hit(f"ip-{n}")
    assert len(limiter._hits) <= 100
