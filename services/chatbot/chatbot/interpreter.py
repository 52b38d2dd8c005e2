"""The offline chat interpreter: common todo requests understood without a language model.

`parse` turns a message into an `Intent` (pure, deterministic, given today's date); `respond`
carries the intent out through the todo tools and writes the reply. When a request names a
todo by words ("delete the milk one") it is matched against the user's titles, and the user is
asked back when that matches nothing or more than one todo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from chatbot.actions import ToolSession
from chatbot.dates import DATE_PHRASE, WEEKDAY, describe_due, parse_date
from chatbot.tools import ToolError

Kind = Literal["add", "list", "complete", "reopen", "delete", "update", "help", "unclear"]

HELP = (
    "I can manage your todos. Try:\n"
    '- "add buy milk tomorrow" (also: today, friday, next monday, in 3 days, 2026-05-01; '
    '"high priority")\n'
    '- "what\'s on my list" or "show my open todos"\n'
    '- "mark 3 done" or "complete the milk one"\n'
    '- "delete 3" or "delete the milk one"\n'
    '- "rename 2 to buy oat milk", "move 2 to friday", "make 2 high priority"'
)

_STOPWORDS = frozenset(
    {
        "the",
        "a",
        "an",
        "one",
        "my",
        "todo",
        "todos",
        "task",
        "item",
        "entry",
        "thing",
        "about",
        "for",
        "that",
        "this",
        "to",
        "it",
        "called",
        "named",
    }
)
_QUOTES = "\"'\u2018\u2019\u201c\u201d"
_PRIORITY_WORDS = {
    "high": "high",
    "medium": "medium",
    "low": "low",
    "urgent": "high",
    "important": "high",
    "top": "high",
    "normal": "medium",
}
_PRIORITY_PHRASE = (
    r"(?:(?:with|at|as)\s+)?(?:(?P<p1>high|medium|low|top|normal)[- ]priority|"
    r"priority\s*:?\s*(?P<p2>high|medium|low)|(?P<p3>urgent|important))"
)
_TRAILING_PRIORITY = re.compile(rf"(?:^|[\s,;]+){_PRIORITY_PHRASE}$", re.I)
_TRAILING_DATE = re.compile(
    rf"(?:^|[\s,;]+)(?:(?:(?:due|by|on|for|before|until)\s+)?(?P<date>{DATE_PHRASE})|"
    rf"(?:due|by|on|before|until)\s+(?P<abbr>{WEEKDAY}))$",
    re.I,
)
_TRAILING_LIST = re.compile(
    r"\s+(?:to|on|onto|in)\s+(?:my|the)\s+(?:todo\s+)?(?:list|todos)$", re.I
)

_ADD = re.compile(
    r"^(?:please\s+)?(?:add|create|new|put|remind me to|todo:)\s*:?\s+(?P<rest>.+)$", re.I
)
_ADD_FILLER = re.compile(
    r"^(?:a\s+)?(?:new\s+)?(?:todo|task|item|reminder)\s*(?::|-|to\b)?\s*", re.I
)
_BARE_ADD = re.compile(r"^(?:add|create|new)(?:\s+(?:a\s+)?(?:new\s+)?(?:todo|task))?$", re.I)
_DELETE = re.compile(
    r"^(?:please\s+)?(?:delete|remove|drop|erase|trash|get rid of|cancel)\s+(?P<target>.+?)"
    r"(?:\s+from\s+(?:my|the)\s+(?:todo\s+)?(?:list|todos))?$",
    re.I,
)
_STATE_WORDS = (
    r"(?P<state>not done|undone|incomplete|not complete|open|done|complete|completed|finished)"
)
_REOPEN_STATES = ("not done", "undone", "incomplete", "not complete", "open")
_MARK = re.compile(
    rf"^(?:please\s+)?(?:mark|set|flag)\s+(?P<target>.+?)\s+(?:as\s+|to\s+)?{_STATE_WORDS}$", re.I
)
_COMPLETE = re.compile(
    r"^(?:please\s+)?(?:complete|finish|check off|tick off|close|"
    r"i(?:'ve| have)? (?:done|finished|completed))\s+(?P<target>.+)$",
    re.I,
)
_REOPEN = re.compile(r"^(?:please\s+)?(?:reopen|uncheck|unmark|undo)\s+(?P<target>.+)$", re.I)
_SUFFIX_DONE = re.compile(r"^(?P<target>.+?)\s+(?:is\s+|are\s+)?(?:done|completed|finished)$", re.I)
_RENAME = re.compile(
    r"^(?:please\s+)?(?:rename|retitle|change|update|edit)\s+(?P<target>.+?)\s+(?:to|into)\s+"
    r"(?P<new>.+)$",
    re.I,
)
_MOVE = re.compile(
    r"^(?:please\s+)?(?:move|reschedule|postpone|push|defer)\s+(?P<target>.+?)\s+"
    r"(?:to|until|till|for)\s+(?P<when>.+)$",
    re.I,
)
_PRIORITIZE = re.compile(
    r"^(?:please\s+)?(?:make|set|mark)\s+(?P<target>.+?)\s+(?:to\s+|as\s+)?(?:a\s+)?"
    r"(?P<prio>high|medium|low|urgent|important|normal)(?:\s+priority)?$",
    re.I,
)
_LIST_PATTERNS = [
    re.compile(p, re.I)
    for p in (
        r"\bwhat(?:'s|s| is)\s+(?:on\s+|in\s+)?my\s+(?:todo\s+)?"
        r"(?:list|todos?|tasks?|plate|agenda)\b",
        r"\bwhat(?:'s|s| is)\s+(?:left|open|pending|remaining|due|done)\b",
        r"^(?:please\s+)?(?:show|list|display|see|view|get|give)\b.*"
        r"\b(?:todos?|tasks?|list|items|everything)\b",
        r"^(?:my\s+)?(?:todos?|tasks?|list|todo list)$",
        r"\bwhat do i (?:have|need) to do\b",
        r"^(?:list|ls)$",
        r"^(?:show|list)\s+(?:done|completed|finished|open|pending)$",
    )
]


@dataclass(frozen=True)
class Target:
    """How the user named a todo: by id ("3", "#3") or by words of its title."""

    todo_id: int | None = None
    words: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class Intent:
    kind: Kind
    target: Target | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # tool arguments (add/update)
    status: Literal["all", "open", "done"] = "all"  # list filter
    problem: str | None = None  # for "unclear": what to ask the user


def parse(message: str, today: date) -> Intent:
    """Understand one chat message; unknown requests become `help`."""
    text = " ".join(message.strip().split()).rstrip(".!?")
    if not text:
        return Intent("help")

    if _BARE_ADD.match(text):
        return Intent("add")
    if match := _ADD.match(text):
        return _parse_add(match["rest"], today)
    if match := _DELETE.match(text):
        return Intent("delete", _target(match["target"]))
    if match := _MARK.match(text):
        reopen = match["state"].lower() in _REOPEN_STATES
        return Intent("reopen" if reopen else "complete", _target(match["target"]))
    if match := _COMPLETE.match(text):
        return Intent("complete", _target(match["target"]))
    if match := _REOPEN.match(text):
        return Intent("reopen", _target(match["target"]))
    if match := _MOVE.match(text):
        due = parse_date(match["when"], today)
        if due is None:
            return Intent(
                "unclear",
                problem=f'I didn\'t understand the date "{match["when"]}". '
                "Try today, tomorrow, friday, in 3 days or 2026-05-01.",
            )
        return Intent("update", _target(match["target"]), {"due_date": due.isoformat()})
    if match := _PRIORITIZE.match(text):
        priority = _PRIORITY_WORDS[match["prio"].lower()]
        return Intent("update", _target(match["target"]), {"priority": priority})
    if match := _RENAME.match(text):
        title, fields = _strip_qualifiers(match["new"], today)
        if title:
            fields["title"] = title
        return Intent("update", _target(match["target"]), fields)
    if any(p.search(text) for p in _LIST_PATTERNS):
        return Intent("list", status=_list_status(text))
    if match := _SUFFIX_DONE.match(text):
        return Intent("complete", _target(match["target"]))
    return Intent("help")


async def respond(message: str, session: ToolSession, today: date) -> str:
    """Carry out `message` through `session` and return the reply; tool failures are explained."""
    intent = parse(message, today)
    try:
        return await _execute(intent, session, today)
    except ToolError as exc:
        return f"Sorry, that didn't work: {exc}."


async def _execute(intent: Intent, session: ToolSession, today: date) -> str:
    if intent.kind == "help":
        return HELP
    if intent.kind == "unclear":
        return intent.problem or HELP
    if intent.kind == "add":
        if not intent.fields.get("title"):
            return 'What should I add? Try "add buy milk tomorrow".'
        todo = await session.run("add_todo", intent.fields)
        return f"Added {_describe(todo, today)}."
    if intent.kind == "list":
        result = await session.run("list_todos", {"status": intent.status})
        return _format_list(result["todos"], intent.status, today)

    todo_id, question = await _resolve(intent, session)
    if todo_id is None:
        return question
    if intent.kind == "complete":
        todo = await session.run("complete_todo", {"todo_id": todo_id})
        return f"Marked {_ref(todo)} as done."
    if intent.kind == "reopen":
        todo = await session.run("update_todo", {"todo_id": todo_id, "done": False})
        return f"Reopened {_ref(todo)}."
    if intent.kind == "delete":
        result = await session.run("delete_todo", {"todo_id": todo_id})
        return f'Deleted #{result["id"]} "{result["title"]}".'
    if not intent.fields:
        return 'What should I change? Try "rename 2 to buy oat milk" or "move 2 to friday".'
    todo = await session.run("update_todo", {"todo_id": todo_id, **intent.fields})
    return f"Updated {_describe(todo, today)}."


async def _resolve(intent: Intent, session: ToolSession) -> tuple[int | None, str]:
    """The id of the todo the user meant, or None and a question to ask back."""
    target = intent.target
    if target is None or (target.todo_id is None and not target.words):
        return None, 'Which todo do you mean? Use its number from "show my todos", e.g. "delete 3".'
    if target.todo_id is not None:
        return target.todo_id, ""

    todos = (await session.run("list_todos", {"status": "all"}))["todos"]
    matches = [t for t in todos if _matches(t, target.words)]
    if intent.kind in ("complete", "reopen"):
        wanted_done = intent.kind == "reopen"
        relevant = [t for t in matches if bool(t.get("done")) == wanted_done]
        if matches and not relevant:
            state = "open" if wanted_done else "done"
            if len(matches) == 1:
                return None, f"{_ref(matches[0])} is already {state}."
            return None, f'All todos matching "{target.text}" are already {state}.'
        matches = relevant
    if not matches:
        return None, (
            f'I couldn\'t find a todo matching "{target.text}". '
            'Say "show my todos" to see them with their numbers.'
        )
    if len(matches) > 1:
        options = ", ".join(_ref(t) for t in matches[:5])
        return None, (
            f"Which one do you mean: {options}? Say it again with the number, "
            f"e.g. {_example(intent.kind, int(matches[0]['id']))}."
        )
    return int(matches[0]["id"]), ""


def _parse_add(rest: str, today: date) -> Intent:
    rest = _ADD_FILLER.sub("", rest, count=1)
    title, fields = _strip_qualifiers(rest, today)
    return Intent("add", fields={"title": title, **fields} if title else fields)


def _strip_qualifiers(text: str, today: date) -> tuple[str, dict[str, Any]]:
    """Split trailing due-date / priority / "to my list" phrases off a title."""
    fields: dict[str, Any] = {}
    title = text.strip()
    while True:
        if match := _TRAILING_LIST.search(title):
            title = title[: match.start()]
        elif "priority" not in fields and (match := _TRAILING_PRIORITY.search(title)):
            word = (match["p1"] or match["p2"] or match["p3"]).lower()
            fields["priority"] = _PRIORITY_WORDS[word]
            title = title[: match.start()]
        elif "due_date" not in fields and (match := _TRAILING_DATE.search(title)):
            due = parse_date(match["date"] or match["abbr"], today)
            if due is None:
                break
            fields["due_date"] = due.isoformat()
            title = title[: match.start()]
        else:
            break
    title = title.strip(" \t,;:-").strip(_QUOTES + " ")
    return title, fields


def _target(text: str) -> Target:
    cleaned = text.strip().strip(_QUOTES)
    if match := re.fullmatch(r"(?:todo|task|item|number|no\.?)?\s*#?\s*(\d+)", cleaned, re.I):
        return Target(todo_id=int(match[1]), text=cleaned)
    words = tuple(w for w in re.findall(r"[\w']+", cleaned.lower()) if w not in _STOPWORDS)
    return Target(words=words, text=" ".join(words) or cleaned)


def _matches(todo: dict[str, Any], words: tuple[str, ...]) -> bool:
    title = str(todo.get("title", "")).lower()
    return all(word in title for word in words)


def _list_status(text: str) -> Literal["all", "open", "done"]:
    lowered = text.lower()
    if re.search(r"\b(open|pending|remaining|left|not done|undone|unfinished|to do)\b", lowered):
        return "open"
    if re.search(r"\b(done|completed|finished)\b", lowered):
        return "done"
    return "all"


def _format_list(todos: list[dict[str, Any]], status: str, today: date) -> str:
    if not todos:
        return {
            "open": "Nothing open: you're all done!",
            "done": "You haven't completed any todos yet.",
        }.get(status, 'Your list is empty. Try "add buy milk tomorrow".')
    label = {"open": "open todo", "done": "done todo"}.get(status, "todo")
    open_count = sum(1 for t in todos if not t.get("done"))
    header = f"You have {len(todos)} {label}{'s' if len(todos) != 1 else ''}"
    if status == "all":
        header += f" ({open_count} open)"
    lines = [f"{header}:"]
    for todo in todos:
        box = "[x]" if todo.get("done") else "[ ]"
        lines.append(f"{box} {_describe(todo, today)}")
    return "\n".join(lines)


def _describe(todo: dict[str, Any], today: date) -> str:
    details = []
    if due := describe_due(todo.get("due_date"), today):
        details.append(f"due {due}")
    if todo.get("priority") and todo.get("priority") != "medium":
        details.append(f"{todo['priority']} priority")
    return _ref(todo) + (f" ({', '.join(details)})" if details else "")


def _ref(todo: dict[str, Any]) -> str:
    return f'#{todo.get("id")} "{todo.get("title")}"'


def _example(kind: Kind, todo_id: int) -> str:
    return {
        "complete": f'"mark {todo_id} done"',
        "reopen": f'"reopen {todo_id}"',
        "delete": f'"delete {todo_id}"',
    }.get(kind, f'"rename {todo_id} to ..." or "move {todo_id} to friday"')
