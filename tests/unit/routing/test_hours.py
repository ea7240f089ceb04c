from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from slackrouter.routing import WeeklyHours

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {"mon": [("09:00", "12:00"), ("13:00", "17:00")], "fri": [("09:00", "15:00")]}


def at(day: int, hour: int, minute: int = 0, tz=BERLIN) -> datetime:
    """A time in the week of Monday 2024-01-15."""
    return datetime(2024, 1, 15 + day, hour, minute, tzinfo=tz)


def test_open_within_an_interval_and_closed_outside() -> None:
    hours = WeeklyHours.from_mapping(OFFICE, "Europe/Berlin")
    assert hours.is_open(at(0, 9))
    assert hours.is_open(at(0, 11, 59))
    assert not hours.is_open(at(0, 12))  # the end is not included
    assert not hours.is_open(at(0, 12, 30))  # lunch
    assert hours.is_open(at(0, 13))
    assert not hours.is_open(at(0, 8, 59))
    assert not hours.is_open(at(1, 10))  # Tuesday is not listed: closed
    assert hours.is_open(at(4, 14, 59))
    assert not hours.is_open(at(5, 10))


def test_last_second_before_the_end_is_open() -> None:
    hours = WeeklyHours.from_mapping({"mon": [("09:00", "17:00")]}, "Europe/Berlin")
    assert hours.is_open(datetime(2024, 1, 15, 16, 59, 59, 999999, tzinfo=BERLIN))


def test_now_in_another_timezone_is_converted_to_the_hours_timezone() -> None:
    hours = WeeklyHours.from_mapping(OFFICE, "Europe/Berlin")
    # 08:30 UTC on a winter Monday is 09:30 in Berlin.
    assert hours.is_open(datetime(2024, 1, 15, 8, 30, tzinfo=UTC))
    new_york_winter = timezone(timedelta(hours=-5))
    # 10:30 in New York is 16:30 in Berlin, 11:30 is 17:30.
    assert hours.is_open(datetime(2024, 1, 15, 10, 30, tzinfo=new_york_winter))
    assert not hours.is_open(datetime(2024, 1, 15, 11, 30, tzinfo=new_york_winter))


def test_the_weekday_is_the_local_one() -> None:
    hours = WeeklyHours.from_mapping({"tue": [("00:00", "02:00")]}, "Asia/Tokyo")
    # Monday 16:30 UTC is Tuesday 01:30 in Tokyo.
    assert hours.is_open(datetime(2024, 1, 15, 16, 30, tzinfo=UTC))


def test_daylight_saving_time_follows_the_wall_clock() -> None:
    hours = WeeklyHours.from_mapping({"mon": [("09:00", "17:00")]}, "Europe/Berlin")
    # In summer Berlin is UTC+2: 07:30 UTC is 09:30 local.
    assert hours.is_open(datetime(2024, 7, 15, 7, 30, tzinfo=UTC))
    assert not hours.is_open(datetime(2024, 1, 15, 7, 30, tzinfo=UTC))


def test_24_00_ends_a_day_and_overnight_hours_split_across_days() -> None:
    hours = WeeklyHours.from_mapping(
        {"mon": [("22:00", "24:00")], "tue": [("00:00", "02:00")]}, "UTC"
    )
    assert hours.is_open(at(0, 23, 59, UTC))
    assert hours.is_open(at(1, 0, 0, UTC))
    assert hours.is_open(at(1, 1, 59, UTC))
    assert not hours.is_open(at(1, 2, 0, UTC))


def test_day_names_are_case_insensitive_and_times_may_have_one_hour_digit() -> None:
    hours = WeeklyHours.from_mapping({"Mon": [("9:00", "17:00")]})
    assert hours.timezone == "UTC"
    assert hours.is_open(at(0, 9, 0, UTC))


def test_round_trips_through_the_mapping_form() -> None:
    hours = WeeklyHours.from_mapping(OFFICE, "Europe/Berlin")
    assert hours.to_mapping() == OFFICE
    assert WeeklyHours.from_mapping(hours.to_mapping(), hours.timezone) == hours


def test_no_hours_at_all_is_always_closed() -> None:
    hours = WeeklyHours.from_mapping({}, "UTC")
    assert not any(hours.is_open(at(day, 12, 0, UTC)) for day in range(7))


@pytest.mark.parametrize(
    ("mapping", "timezone_name", "message"),
    [
        ({"mon": [("17:00", "09:00")]}, "UTC", "must start before it ends"),
        ({"mon": [("09:00", "09:00")]}, "UTC", "must start before it ends"),
        ({"monday": [("09:00", "17:00")]}, "UTC", "unknown day 'monday'"),
        ({"mon": [("9am", "17:00")]}, "UTC", "'9am' is not a time of the form HH:MM"),
        ({"mon": [("09:60", "17:00")]}, "UTC", "'09:60' is not a time of day"),
        ({"mon": [("09:00", "24:30")]}, "UTC", "'24:30' is not a time of day"),
        ({"mon": [("09:00", "17:00")]}, "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        ({"mon": [("09:00", "17:00")]}, "", "unknown timezone ''"),
    ],
)
def test_invalid_hours_are_rejected_with_a_clear_message(
    mapping: dict, timezone_name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        WeeklyHours.from_mapping(mapping, timezone_name)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="7 days"):
        WeeklyHours("UTC", ((),))
    with pytest.raises(ValueError, match="must start before it ends"):
        WeeklyHours("UTC", (((600, 1500),),) + ((),) * 6)


def test_a_naive_now_is_refused() -> None:
    hours = WeeklyHours.from_mapping(OFFICE, "UTC")
    with pytest.raises(ValueError, match="timezone-aware"):
        hours.is_open(datetime(2024, 1, 15, 10))
