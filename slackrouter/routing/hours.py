"""A chatflow's business hours: per weekday a list of local-time intervals in one timezone."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day keys of the mapping form, Monday first (the order of `datetime.weekday()`)."""

_MINUTES_PER_DAY = 24 * 60
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")

Interval = tuple[int, int]
"""Minutes after local midnight: `start` is included, `end` is not; `end` may be 1440 (24:00)."""


@dataclass(frozen=True)
class WeeklyHours:
    """Opening hours, open when local wall-clock time falls in one of the day's intervals.

    Build it with `from_mapping`; `days` holds seven tuples of intervals, Monday first, in
    minutes after local midnight. An interval cannot cross midnight: write 22:00-24:00 on one
    day and 00:00-02:00 on the next. A day with no interval is closed all day.
    """

    timezone: str
    days: tuple[tuple[Interval, ...], ...]

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if len(self.days) != len(DAY_NAMES):
            raise ValueError(f"business hours need 7 days, got {len(self.days)}")
        for name, intervals in zip(DAY_NAMES, self.days, strict=True):
            for start, end in intervals:
                if not 0 <= start < end <= _MINUTES_PER_DAY:
                    raise ValueError(
                        f"{name}: {_clock(start)}-{_clock(end)} must start before it ends, "
                        "within one day (split overnight hours at 24:00)"
                    )

    @classmethod
    def from_mapping(
        cls, hours: Mapping[str, Iterable[tuple[str, str]]], timezone: str = "UTC"
    ) -> WeeklyHours:
        """From `{"mon": [("09:00", "17:00")], ...}`; days left out are closed.

        Day keys are the three-letter English names in any case; times are "HH:MM", and "24:00"
        is allowed as an end. Raises ValueError naming the offending day or time.
        """
        by_day: dict[int, list[Interval]] = {}
        for key, intervals in hours.items():
            name = key.strip().lower()
            if name not in DAY_NAMES:
                raise ValueError(f"unknown day {key!r}: use one of {', '.join(DAY_NAMES)}")
            by_day[DAY_NAMES.index(name)] = [
                (_minutes(start, name), _minutes(end, name)) for start, end in intervals
            ]
        return cls(timezone, tuple(tuple(by_day.get(i, ())) for i in range(len(DAY_NAMES))))

    def to_mapping(self) -> dict[str, list[tuple[str, str]]]:
        """The `from_mapping` form of these hours, open days only."""
        return {
            name: [(_clock(start), _clock(end)) for start, end in intervals]
            for name, intervals in zip(DAY_NAMES, self.days, strict=True)
            if intervals
        }

    def is_open(self, now: datetime) -> bool:
        """Whether `now` (timezone-aware) falls within the hours, in the hours' own timezone."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("is_open needs a timezone-aware datetime")
        local = now.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])


def _minutes(value: str, day: str) -> int:
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{day}: {value!r} is not a time of the form HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"{day}: {value!r} is not a time of day (00:00 to 24:00)")
    return hour * 60 + minute


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
