"""Pace Slack posts to Slack's limits: about one message per second per channel, short bursts
allowed. A post that would exceed it waits in the outbox instead of drawing a 429."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

# A post back a little before its slot (clocks read in two places, timestamps stored to the
# microsecond) still has it.
EARLY = 0.005
# A slot kept this long after it came is not waited for any more (another replica posted it).
KEPT_FOR = 60.0


@dataclass
class _Bucket:
    tokens: float  # below the spare: slots promised to posts told to wait
    updated: float
    kept: dict[Hashable, float] = field(default_factory=dict)  # post: its slot's time
    refused: float | None = None  # when Slack last refused a post
    queued_until: float = 0.0  # the slot given to the last post queued (`slots`)


@dataclass(frozen=True)
class Booked:
    """Channels booked ahead, each with the seconds until its next free slot, and the posts
    holding a slot in them."""

    channels: dict[str, float] = field(default_factory=dict)
    holding: frozenset[Hashable] = frozenset()


class ChannelPacer:
    """A token bucket per channel (in this process), at Slack's rate. A post needs a little more
    than its token (`spare`): what is left over stays in the bucket, so that Slack, counting from
    when each post reaches it, always has that much more than the pacer, and jitter in how long
    posts take to get there (up to spare ÷ rate seconds) draws no 429.

    A post told to wait is kept the next free slot: it is told how long until then, and when it
    comes back at that time it goes, while posts asking after it get later slots. So posts to a
    busy channel go one per slot, each asking twice at most."""

    def __init__(
        self,
        *,
        per_second: float = 1.0,
        burst: int = 3,
        spare: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._spare = spare
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, channel: str, post: Hashable) -> float:
        """Take a slot for `post` (its outbox id): 0 when it may go now, else the seconds until
        the slot kept for it."""
        now = self._clock()
        bucket = self._bucket(channel, now)
        slot = bucket.kept.pop(post, None)
        if slot is None:
            bucket.tokens -= 1
            if bucket.tokens >= self._spare:
                return 0.0
            slot = now + (self._spare - bucket.tokens) / self._rate
        if slot <= now + EARLY:
            return 0.0
        bucket.kept[post] = slot
        return slot - now

    def free(self, channel: str) -> bool:
        """Whether a post to `channel` would go now (`take` would answer 0)."""
        return self._has_slot(self._bucket(channel, self._clock()))

    def _has_slot(self, bucket: _Bucket) -> bool:
        return bucket.tokens - 1 >= self._spare

    def booked(self, beyond: float) -> Booked:
        """The channels whose next free slot is more than `beyond` seconds away: posts to them
        are not worth trying yet (nor reading from the database), except those holding a slot."""
        now = self._clock()
        channels: dict[str, float] = {}
        holding: set[Hashable] = set()
        for channel in self._buckets:
            bucket = self._bucket(channel, now)
            wait = (self._spare + 1 - bucket.tokens) / self._rate
            if wait > beyond:
                channels[channel] = wait
                holding.update(bucket.kept)
        return Booked(channels, frozenset(holding))

    def slots(self, channel: str, count: int, *, queued: bool) -> list[float]:
        """The seconds until the slots of `count` posts that wait for `channel`, one a slot
        from its next free one: `queued` posts (new ones, in order of arrival) behind those
        queued before them, the others (posts back at their slot to find it taken) in front.
        An estimate for when to look at each again, not a promise: `take` decides."""
        now = self._clock()
        bucket = self._bucket(channel, now)
        gap = 1.0 / self._rate
        first = now + max(0.0, (self._spare + 1 - bucket.tokens) / self._rate)
        if queued:
            first = max(first, bucket.queued_until + gap)
        slots = [first + n * gap for n in range(count)]
        if queued and slots:
            bucket.queued_until = slots[-1]
        return [slot - now for slot in slots]

    def queue(self, channel: str) -> float:
        """The seconds a new post to `channel` waits: none if the channel has a free slot and no
        post queued, else until its slot behind the posts queued before it (the slot a round
        putting it off would give it). The visitor message writer asks as it writes a post, so
        that no round has to read it and write it again to put it off."""
        now = self._clock()
        bucket = self._bucket(channel, now)
        if self._has_slot(bucket) and bucket.queued_until <= now:
            return 0.0
        return self.slots(channel, 1, queued=True)[0]

    def refused(self, channel: str) -> None:
        """Slack refused a post (a 429, an error), which used none of the channel's allowance:
        its token goes back. Refused again before the bucket could have filled up, the channel
        has less left than the pacer thought (other posters, a smaller burst): its bucket is
        emptied instead, so that its next posts wait for tokens rather than draw 429s."""
        now = self._clock()
        bucket = self._bucket(channel, now)
        if bucket.refused is not None and now - bucket.refused < self._burst / self._rate:
            bucket.tokens = min(bucket.tokens, 0.0)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + 1)
        bucket.refused = now

    def _bucket(self, channel: str, now: float) -> _Bucket:
        bucket = self._buckets.setdefault(channel, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        for post in [post for post, slot in bucket.kept.items() if slot < now - KEPT_FOR]:
            del bucket.kept[post]
        return bucket
