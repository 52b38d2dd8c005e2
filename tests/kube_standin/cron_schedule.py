"""Standard 5-field cron schedules (minute hour day-of-month month day-of-week), as the CronJob
controller reads them: `*`, `*/n`, `a-b`, `a-b/n`, lists, month and weekday names, `?`, and the
@yearly/@monthly/@weekly/@daily/@hourly macros; day-of-month and day-of-week match either one
when both are restricted (cron's rule)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {3: {n: i + 1 for i, n in enumerate(_MONTHS)}, 4: {n: i for i, n in enumerate(_WEEKDAYS)}}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


class ScheduleError(ValueError):
    """The schedule cannot be parsed; the message says which part."""


def _value(text: str, field: int) -> int:
    names = _NAMES.get(field, {})
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ScheduleError(f"bad value {text!r}")
    return int(text)


def _field(text: str, field: int) -> frozenset[int]:
    low, high = _RANGES[field]
    out: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ScheduleError(f"bad step {part!r}")
        if spec in ("*", "?"):
            start, end = low, high
        elif "-" in spec:
            first, _, last = spec.partition("-")
            start, end = _value(first, field), _value(last, field)
        else:
            start = _value(spec, field)
            end = high if step else start
        if not (low <= start <= end <= high):
            raise ScheduleError(f"{part!r} is out of range {low}-{high}")
        out.update(range(start, end + 1, step or 1))
    if field == 4 and 7 in out:
        out = (out - {7}) | {0}
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Schedule:
        text = MACROS.get(text.strip().lower(), text.strip())
        parts = text.split()
        if len(parts) != 5:
            raise ScheduleError(f"expected exactly 5 fields, found {len(parts)}: {text!r}")
        fields = [_field(part, index) for index, part in enumerate(parts)]
        return cls(*fields, any_day=parts[2] in ("*", "?"), any_weekday=parts[4] in ("*", "?"))

    def _day_matches(self, when: dt.datetime) -> bool:
        day = when.day in self.days
        weekday = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first whole minute strictly after `when` that the schedule names."""
        t = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = t + dt.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
            else:
                return t
        raise ScheduleError("the schedule never fires")
