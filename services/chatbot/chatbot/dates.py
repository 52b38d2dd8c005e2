"""Plain-English due dates ("tomorrow", "friday", "in 3 days") resolved against a given today."""

from __future__ import annotations

import re
from datetime import date, timedelta

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAY = (
    r"(?:mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?)"
)

WEEKDAY_FULL = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"

# One alternation, usable inside larger patterns; longer phrases first. A bare weekday must be
# spelled out ("add watch the sun" keeps its title); abbreviations need "next"/"this".
DATE_PHRASE = (
    r"(?:day after tomorrow|today|tonight|tomorrow|tmrw|"
    r"in\s+(?:\d{1,3}|a|an|one|two|three)\s+(?:days?|weeks?)|next\s+week|"
    rf"(?:next|this)\s+{WEEKDAY}|{WEEKDAY_FULL}|"
    r"\d{4}-\d{2}-\d{2})"
)
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}


def parse_date(phrase: str, today: date) -> date | None:
    """The date `phrase` names relative to `today`, or None if it names no date.

    A bare or "next" weekday is the next such day after today; "this <weekday>" includes today.
    """
    text = " ".join(phrase.lower().split())
    if text in ("today", "tonight"):
        return today
    if text in ("tomorrow", "tmrw"):
        return today + timedelta(days=1)
    if text == "day after tomorrow":
        return today + timedelta(days=2)
    if text == "next week":
        return today + timedelta(days=7)
    if match := re.fullmatch(r"in (\d{1,3}|a|an|one|two|three) (day|week)s?", text):
        count = _NUMBER_WORDS.get(match[1]) or int(match[1])
        return today + timedelta(days=count * (7 if match[2] == "week" else 1))
    if match := re.fullmatch(r"(next |this )?([a-z]+)", text):
        weekday = _weekday(match[2])
        if weekday is not None:
            ahead = (weekday - today.weekday()) % 7
            if ahead == 0 and match[1] != "this ":
                ahead = 7
            return today + timedelta(days=ahead)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    return None


def describe_due(due: str | None, today: date) -> str | None:
    """A short human label for an ISO due date: "today", "tomorrow", "Fri 2026-03-06"."""
    if not due:
        return None
    try:
        day = date.fromisoformat(due[:10])
    except ValueError:
        return due
    if day == today:
        return "today"
    if day == today + timedelta(days=1):
        return "tomorrow"
    label = f"{day:%a} {day.isoformat()}"
    return f"{label}, overdue" if day < today else label


def _weekday(word: str) -> int | None:
    if not re.fullmatch(WEEKDAY, word):
        return None
    return [name[:3] for name in WEEKDAYS].index(word[:3])
