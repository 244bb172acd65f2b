"""An alert's schedule: a Quartz cron expression (as Databricks writes them) in a time zone, read by croniter.

Quartz: `seconds minutes hours day-of-month month day-of-week [year]`, `?` for "no specific value", days of the
week 1-7 for SUN-SAT (or their names), e.g. `0 0/15 * * * ?` (every 15 minutes) or `0 0 8 ? * MON-FRI`. croniter
reads the same fields with seconds first once the days of the week are renumbered (0-6 for SUN-SAT) and the
year, if given, is `*`. A time zone is an IANA name (`Europe/Berlin`; default UTC), so 08:00 stays 08:00
across daylight-saving changes.

The next run is the first fire time strictly after a moment: after downtime the scheduler asks from *now*, so
fire times missed while no gateway ran collapse into one catch-up evaluation (gateway/alerts/scheduler.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

PAUSE_STATUSES = ("UNPAUSED", "PAUSED")
_DAY_NUMBER = re.compile(r"[0-9]{1,18}")  # \d takes other scripts' digits
# How many fire times are compared when checking the shortest interval of an expression.
_SAMPLES = 24


class ScheduleError(ValueError):
    """An expression or time zone that cannot be a schedule; the message says why."""


@dataclass(frozen=True, slots=True)
class Schedule:
    quartz: str  # as given, normalised for spaces
    timezone_id: str
    _cron: str  # croniter's spelling, seconds first

    @classmethod
    def parse(cls, quartz: str, timezone_id: str | None) -> Schedule:
        text = " ".join(quartz.split())
        zone = timezone_id or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"Unknown time zone '{zone[:64]}'; use an IANA name such as Europe/Berlin.") from None
        cron = _to_croniter(text)
        if not croniter.is_valid(cron, second_at_beginning=True):
            raise ScheduleError(
                f"'{text[:120]}' is not a Quartz cron expression (seconds minutes hours day month weekday)."
            )
        schedule = cls(text, zone, cron)
        try:
            schedule.next_after(datetime.now(UTC))
        except (CroniterError, ValueError, KeyError):
            raise ScheduleError(f"'{text[:120]}' never fires.") from None
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment`, in UTC."""
        local = moment.astimezone(ZoneInfo(self.timezone_id))
        found: datetime = croniter(self._cron, local, second_at_beginning=True).get_next(datetime)
        return found.astimezone(UTC)

    def shortest_interval(self, start: datetime) -> float:
        """The shortest gap in seconds between consecutive fire times over the next few (refused below a floor)."""
        local = start.astimezone(ZoneInfo(self.timezone_id))
        times = croniter(self._cron, local, second_at_beginning=True)
        previous: datetime = times.get_next(datetime)
        shortest = float("inf")
        for _ in range(_SAMPLES):
            following: datetime = times.get_next(datetime)
            shortest = min(shortest, (following - previous).total_seconds())
            previous = following
        return shortest


def _to_croniter(quartz: str) -> str:
    fields = quartz.split(" ")
    if len(fields) == 7:
        if fields[6] != "*":
            raise ScheduleError("A year field other than '*' is not supported.")
        fields = fields[:6]
    if len(fields) != 6:
        raise ScheduleError(
            "A schedule is a Quartz cron expression of 6 fields (seconds minutes hours day-of-month month "
            "day-of-week), e.g. '0 0/15 * * * ?'."
        )
    if fields[3] == "?" and fields[5] == "?":
        raise ScheduleError("Only one of day-of-month and day-of-week may be '?'.")
    fields[5] = _weekdays(fields[5])
    return " ".join(fields)


def _weekdays(field: str) -> str:
    """Quartz numbers the days of the week 1-7 from Sunday; croniter 0-6. Names are the same in both."""
    parts = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        nth = ""
        if "#" in base:
            base, _, count = base.partition("#")
            nth = "#" + count
        base = _DAY_NUMBER.sub(_renumber, base)
        parts.append(base + nth + (slash + step if slash else ""))
    return ",".join(parts)


def _renumber(match: re.Match[str]) -> str:
    day = int(match.group(0))
    if not 1 <= day <= 7:
        raise ScheduleError(f"Day of week {day} does not exist; Quartz numbers them 1 (SUN) to 7 (SAT).")
    return str(day - 1)
