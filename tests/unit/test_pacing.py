"""Pacing posts per channel: bursts, then one slot per second, each slot kept for the post told
to wait for it."""

from __future__ import annotations

import pytest

from slackrouter.services.pacing import ChannelPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_goes_at_once_then_posts_wait_their_turn(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=3, spare=0.05, clock=clock)
    assert [pacer.take("C1", post) for post in (1, 2)] == [0, 0]
    # The burst's last post waits for the spare, which stays in the bucket from then on.
    assert pacer.take("C1", 3) == pytest.approx(0.05)
    assert pacer.take("C1", 4) == pytest.approx(1.05)
    assert pacer.take("C1", 5) == pytest.approx(2.05)
    assert pacer.take("C2", 6) == 0  # each channel has its own


def test_a_post_told_to_wait_goes_when_it_comes_back_and_no_one_takes_its_slot(
    clock: Clock,
) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=1, spare=0.0, clock=clock)
    assert pacer.take("C1", 1) == 0
    assert pacer.take("C1", 2) == pytest.approx(1.0)
    assert pacer.take("C1", 3) == pytest.approx(2.0)
    clock.now += 1.0
    assert pacer.take("C1", 4) == pytest.approx(2.0)  # after the slots kept for 2 and 3
    assert pacer.take("C1", 2) == 0
    clock.now += 0.998  # a little early, as timestamps and clocks allow
    assert pacer.take("C1", 3) == 0


def test_a_post_back_too_early_is_told_the_rest_of_its_wait(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=1, spare=0.0, clock=clock)
    pacer.take("C1", 1)
    assert pacer.take("C1", 2) == pytest.approx(1.0)
    clock.now += 0.5
    assert pacer.take("C1", 2) == pytest.approx(0.5)
    clock.now += 0.5
    assert pacer.take("C1", 2) == 0


def test_a_refused_post_gives_its_token_back(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=1, spare=0.0, clock=clock)
    assert pacer.take("C1", 1) == 0
    pacer.refused("C1")  # Slack answered 429: the post was not made
    assert pacer.take("C1", 2) == 0
    assert pacer.take("C1", 3) == pytest.approx(1.0)


def test_a_channel_refused_twice_in_a_row_waits_for_new_tokens(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=3, spare=0.0, clock=clock)
    assert pacer.take("C1", 1) == 0
    pacer.refused("C1")
    assert pacer.take("C1", 2) == 0
    clock.now += 2.0
    pacer.refused("C1")  # again: Slack has less room than the pacer thought
    assert pacer.take("C1", 3) == pytest.approx(1.0)
    clock.now += 30
    assert pacer.take("C1", 4) == 0  # full again
    pacer.refused("C1")  # long after: a refusal now and then costs nothing
    assert [pacer.take("C1", post) for post in (5, 6, 7)] == [0, 0, 0]


def test_posts_never_go_faster_than_the_rate(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=3, spare=0.05, clock=clock)
    sent: list[float] = []
    waiting = {post: clock.now for post in range(20)}
    while waiting:
        post = min(waiting, key=lambda p: (waiting[p], p))
        clock.now = max(clock.now, waiting.pop(post))
        wait = pacer.take("C1", post)
        if wait:
            waiting[post] = clock.now + wait
        else:
            sent.append(clock.now)
    assert len(sent) == 20
    for n in range(3, 20):
        # Any window holds at most the burst plus what the rate refilled.
        assert sent[n] - sent[n - 3] >= 1.0 - 1e-9
    assert sent[-1] - sent[0] == pytest.approx(17.05)


def test_a_booked_channel_says_how_long_until_its_next_free_slot(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=1, spare=0.0, clock=clock)
    assert pacer.booked(0.0).channels == {}  # nothing posted: nothing booked
    assert pacer.take("C1", 1) == 0
    assert pacer.take("C1", 2) == pytest.approx(1.0)  # 2 keeps the slot in one second
    assert pacer.take("C2", 3) == 0
    booked = pacer.booked(0.0)
    # A new post to C1 would come after 2's slot; C2's bucket fills again in a second.
    assert booked.channels == {"C1": pytest.approx(2.0), "C2": pytest.approx(1.0)}
    assert booked.holding == {2}
    assert pacer.booked(1.5).channels == {"C1": pytest.approx(2.0)}
    clock.now += 2.0
    assert pacer.take("C1", 2) == 0  # its slot came
    clock.now += 1.0
    assert pacer.booked(0.0).channels == {}


def test_posts_waiting_for_a_channel_get_its_slots_one_a_second_in_order(clock: Clock) -> None:
    pacer = ChannelPacer(per_second=1.0, burst=1, spare=0.0, clock=clock)
    assert pacer.take("C1", 1) == 0  # C1's next free slot is in a second
    assert pacer.slots("C1", 3, queued=True) == pytest.approx([1.0, 2.0, 3.0])
    assert pacer.slots("C1", 2, queued=True) == pytest.approx([4.0, 5.0])  # behind those
    # A post back at its slot to find it taken goes in front of the queue.
    assert pacer.slots("C1", 1, queued=False) == pytest.approx([1.0])
    assert pacer.slots("C2", 1, queued=True) == [0.0]  # a free channel: now
    clock.now += 10.0
    assert pacer.slots("C1", 1, queued=True) == [0.0]  # the queue has gone by
