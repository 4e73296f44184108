"""A profile's schedule and the one rule that says when its backup is due.

A schedule is an interval (`every 24h`), optionally a daily time window (`between
08:00-19:00`) and weekdays (`days mon-fri`). A profile is due when its last successful
backup is older than its interval, whatever happened meanwhile: a laptop that was shut,
asleep or away backs up at the first chance once it is back (inside the window), instead of
waiting for the next clock time, which is how missed runs get silently skipped.

Pure: every function takes the time it is asked about; nothing here reads the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from backdown.errors import UsageError, quoted

# The operating system's job looks every TICK seconds; a shorter interval would be a promise
# it cannot keep.
TICK = 15 * 60
MIN_EVERY = TICK
MAX_EVERY = 366 * 86400
# Due a little early, so that a daily backup does not start one tick later every day.
MAX_SLACK = 10 * 60
# After a run that failed (not one that found the server unreachable), wait this long, at
# most the interval, before trying again: a file that always fails must not make every tick
# a full backup.
RETRY_AFTER_FAILURE = 3600
# Without a schedule, a profile counts as overdue after this long without a success.
UNSCHEDULED_OVERDUE = 7 * 86400

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_INTERVAL_RE = re.compile(r"(\d+)([mhdw])")
_CLOCK_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Schedule:
    """When a profile wants a backup. `window` is (start, end) in minutes after midnight,
    local time; an end before the start runs over midnight. `days` holds the weekday
    numbers (Monday is 0) on which a window starts; all seven when no days were given."""

    every: int
    window: tuple[int, int] | None = None
    days: frozenset[int] = frozenset(range(7))

    @classmethod
    def parse(cls, every: str, between: str = "", days: str = "") -> Schedule:
        """From the profile's three settings (as `schedule set` takes them)."""
        return cls(parse_interval(every), parse_window(between), parse_days(days))

    @property
    def every_text(self) -> str:
        return interval_text(self.every)

    @property
    def window_text(self) -> str:
        if self.window is None:
            return ""
        return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in self.window)

    @property
    def days_text(self) -> str:
        return days_text(self.days)

    def describe(self) -> str:
        """One line a person reads: 'every 24h, 08:00-19:00, mon-fri'."""
        parts = [f"every {self.every_text}"]
        if self.window is not None:
            parts.append(self.window_text)
        if self.days != frozenset(range(7)):
            parts.append(self.days_text)
        return ", ".join(parts)

    @property
    def slack(self) -> float:
        return min(self.every / 10, MAX_SLACK)

    def allows(self, when: datetime) -> bool:
        """Whether `when` (a local time) is inside the window, on an allowed day."""
        minute = when.hour * 60 + when.minute
        if self.window is None:
            return when.weekday() in self.days
        start, end = self.window
        if start < end:
            return start <= minute < end and when.weekday() in self.days
        if minute >= start:  # over midnight: the evening belongs to today's window
            return when.weekday() in self.days
        if minute < end:  # and the small hours to yesterday's
            return (when.weekday() - 1) % 7 in self.days
        return False

    def next_allowed(self, when: datetime) -> datetime:
        """The first moment at or after `when` that the window and days allow."""
        if self.allows(when):
            return when
        start = self.window[0] if self.window else 0
        for ahead in range(9):
            day = when.date() + timedelta(days=ahead)
            candidate = datetime.combine(day, time(start // 60, start % 60), tzinfo=when.tzinfo)
            if candidate > when and self.allows(candidate):
                return candidate
        raise AssertionError("unreachable: a schedule allows at least one day a week")


def next_due(
    schedule: Schedule,
    now: datetime,
    last_success: float | None,
    last_failure: float | None = None,
) -> datetime:
    """When the next backup is due: `now` itself or later (same time zone as `now`).

    last_success and last_failure are POSIX times. last_failure is the last run that failed
    for another reason than an unreachable server; it counts only when later than the last
    success.
    """
    tz = now.tzinfo
    earliest = now
    if last_success is not None:
        earliest = max(earliest, _local(last_success + schedule.every - schedule.slack, tz))
    if last_failure is not None and (last_success is None or last_failure > last_success):
        retry = min(schedule.every, RETRY_AFTER_FAILURE)
        earliest = max(earliest, _local(last_failure + retry, tz))
    return schedule.next_allowed(earliest)


def is_due(
    schedule: Schedule,
    now: datetime,
    last_success: float | None,
    last_failure: float | None = None,
) -> bool:
    return next_due(schedule, now, last_success, last_failure) <= now


def overdue_at(schedule: Schedule | None, since: float, tz: tzinfo | None = None) -> float:
    """When a profile whose last success (or, never successful, first attempt) was at `since`
    becomes overdue: one whole interval after its backup fell due inside its window and on
    its days (twice the interval for a schedule without either); a week without a schedule.
    So a weekday schedule is not overdue over the weekend."""
    if schedule is None:
        return since + UNSCHEDULED_OVERDUE
    fell_due = schedule.next_allowed(_local(since + schedule.every, tz))
    return fell_due.timestamp() + schedule.every


def _local(posix: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(posix, tz)


# ------------------------------------------------------------------ parsing and showing


def parse_interval(text: str) -> int:
    """'30m', '4h', '24h', '7d', '1w', '1h30m' -> seconds."""
    compact = str(text).strip().lower().replace(" ", "")
    if not compact or _INTERVAL_RE.sub("", compact):
        raise UsageError(
            f"{quoted(text)} is not an interval: give a number and a unit, like 30m, 4h, 24h or 7d"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _INTERVAL_RE.findall(compact))
    if seconds < MIN_EVERY:
        raise UsageError(
            f"an interval of {quoted(text)} is too short: the scheduled job looks every "
            f"{TICK // 60} minutes, so give at least {TICK // 60}m"
        )
    if seconds > MAX_EVERY:
        raise UsageError(f"an interval of {quoted(text)} is too long: give at most 366d")
    return seconds


def parse_age(text: str, what: str) -> int:
    """An age such as '2d', '36h' or '90m' -> seconds (from 1 minute to 10 years)."""
    compact = str(text).strip().lower().replace(" ", "")
    if not compact or _INTERVAL_RE.sub("", compact):
        raise UsageError(f"{what} {quoted(text)} is not an age: give a number and a unit, like 2d")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _INTERVAL_RE.findall(compact))
    if not 60 <= seconds <= 3650 * 86400:
        raise UsageError(f"{what} {quoted(text)} is out of range: give from 1m to 3650d")
    return seconds


def interval_text(seconds: int) -> str:
    """The shortest way to write an interval: 86400 -> '24h', 5400 -> '1h30m', 7 days -> '7d'."""
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours}h{minutes}m"
    return f"{hours}h" if hours else f"{minutes}m"


def parse_window(text: str) -> tuple[int, int] | None:
    """'08:00-19:00' -> (480, 1140); '' -> None (any time of day)."""
    compact = str(text or "").strip().replace(" ", "")
    if not compact:
        return None
    first, sep, last = compact.partition("-")
    start, end = _CLOCK_RE.match(first), _CLOCK_RE.match(last)
    if not sep or start is None or end is None:
        raise UsageError(
            f"{quoted(text)} is not a time range: give it as HH:MM-HH:MM, like 08:00-19:00 "
            "(22:00-06:00 runs over midnight)"
        )
    window = (_minutes(start), _minutes(end))
    if window[0] == window[1]:
        raise UsageError(f"the time range {quoted(text)} is empty: its start and end are equal")
    return window


def _minutes(match: re.Match[str]) -> int:
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_days(text: str) -> frozenset[int]:
    """'mon-fri', 'mon,wed,fri', 'sat-sun', 'fri-mon' (wraps), 'daily' -> weekday numbers."""
    compact = str(text or "").strip().lower().replace(" ", "")
    if compact in ("", "daily", "all", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in compact.split(","):
        first, sep, last = part.partition("-")
        start = _day(first)
        end = _day(last) if sep else start
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def _day(name: str) -> int:
    for number, short in enumerate(DAY_NAMES):
        if name in (short, _FULL_DAY_NAMES[number]):
            return number
    raise UsageError(
        f"{quoted(name)} is not a weekday: use mon, tue, wed, thu, fri, sat, sun, ranges like "
        "mon-fri, or lists like mon,wed,fri"
    )


def days_text(days: frozenset[int]) -> str:
    """Weekday numbers back to the shortest text: {0, 1, 2, 3, 4} -> 'mon-fri'."""
    if days == frozenset(range(7)):
        return "daily"
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    # A run that ends on Sunday goes on into one that starts on Monday: 'sat-mon'.
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:
        runs[0] = runs.pop() + runs[0]
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )
