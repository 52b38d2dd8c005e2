"""The offline interpreter end to end: POST /chat on the running chatbot (no API key), with
every effect checked in the real backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta


@contextmanager
def dates_during(pick: Callable[[date], date]) -> Iterator[set[str]]:
    """The ISO dates `pick` gives for the day(s) the block ran on (it may straddle midnight)."""
    found: set[str] = set()
    found.add(pick(date.today()).isoformat())
    yield found
    found.add(pick(date.today()).isoformat())


def next_weekday(day: date, weekday: int) -> date:
    """The first `weekday` strictly after `day`."""
    return day + timedelta(days=(weekday - day.weekday() - 1) % 7 + 1)


def tools_used(answer: dict) -> list[str]:
    return [a["tool"] for a in answer["actions"]]


def test_add_with_due_date_and_priority(user) -> None:
    with dates_during(lambda d: d + timedelta(days=1)) as tomorrow:
        answer = user.chat("add buy milk tomorrow")
    assert tools_used(answer) == ["add_todo"]
    created = answer["actions"][0]["result"]
    assert created["title"] == "buy milk"
    assert created["due_date"] in tomorrow
    assert answer["reply"].startswith(f'Added #{created["id"]} "buy milk" (due tomorrow')

    with dates_during(lambda d: next_weekday(d, 4)) as friday:
        answer = user.chat("Add call mom on Friday, high priority.")
    created = answer["actions"][0]["result"]
    assert (created["title"], created["priority"]) == ("call mom", "high")
    assert created["due_date"] in friday

    with dates_during(lambda d: d) as today:
        user.chat("remind me to pay rent today")
    stored = {t["title"]: t for t in user.todos()}
    assert set(stored) == {"buy milk", "call mom", "pay rent"}
    assert stored["pay rent"]["due_date"] in today
    assert stored["buy milk"]["priority"] == "medium"


def test_more_date_phrases_and_titles_that_only_look_like_dates(user) -> None:
    with dates_during(lambda d: d + timedelta(days=3)) as in_three_days:
        user.chat("add water the plants in 3 days")
    user.chat("todo: file taxes 2031-04-15")
    user.chat("add watch the sun")  # "sun" is not taken for Sunday
    user.chat("put eggs on my list")
    stored = {t["title"]: t["due_date"] for t in user.todos()}
    assert stored.pop("water the plants") in in_three_days
    assert stored == {"file taxes": "2031-04-15", "watch the sun": None, "eggs": None}


def test_list_shows_the_users_todos(user) -> None:
    assert "Your list is empty" in user.chat("what's on my list?")["reply"]
    milk = user.add("buy milk")
    bread = user.add("buy bread", priority="high")
    user.stack.http.patch(
        f"{user.stack.backend.base_url}/api/todos/{bread['id']}",
        headers=user.auth,
        json={"done": True},
    )
    answer = user.chat("show my todos")
    assert tools_used(answer) == ["list_todos"]
    assert answer["reply"].splitlines() == [
        "You have 2 todos (1 open):",
        f'[ ] #{milk["id"]} "buy milk"',
        f'[x] #{bread["id"]} "buy bread" (high priority)',
    ]
    open_only = user.chat("show my open todos")["reply"]
    assert "buy milk" in open_only and "buy bread" not in open_only


def test_complete_by_number_and_by_words(user) -> None:
    milk = user.add("buy milk")
    dentist = user.add("book the dentist")
    answer = user.chat(f"mark {milk['id']} done")
    assert answer["reply"] == f'Marked #{milk["id"]} "buy milk" as done.'
    assert tools_used(answer) == ["complete_todo"]
    answer = user.chat("complete the dentist one")
    assert answer["reply"] == f'Marked #{dentist["id"]} "book the dentist" as done.'
    assert all(t["done"] for t in user.todos())
    assert "already done" in user.chat("mark the milk one done")["reply"]


def test_delete_by_words_asks_back_when_unclear(user) -> None:
    oat = user.add("buy oat milk")
    almond = user.add("buy almond milk")
    answer = user.chat("delete the milk one")
    assert answer["reply"].startswith(
        f'Which one do you mean: #{oat["id"]} "buy oat milk", #{almond["id"]} "buy almond milk"?'
    )
    assert len(user.todos()) == 2, "nothing may be deleted while the request is ambiguous"

    answer = user.chat("delete the spaceship one")
    assert answer["reply"].startswith('I couldn\'t find a todo matching "spaceship"')
    assert len(user.todos()) == 2

    answer = user.chat("delete the almond milk one")
    assert answer["reply"] == f'Deleted #{almond["id"]} "buy almond milk".'
    assert tools_used(answer) == ["list_todos", "delete_todo"]
    assert [t["id"] for t in user.todos()] == [oat["id"]]


def test_rename_move_and_reprioritise(user) -> None:
    todo = user.add("buy milk")
    user.chat(f"rename {todo['id']} to buy oat milk")
    with dates_during(lambda d: next_weekday(d, 0)) as monday:
        user.chat("move the oat milk one to monday")
    user.chat(f"make {todo['id']} high priority")
    [stored] = user.todos()
    assert stored["title"] == "buy oat milk"
    assert stored["due_date"] in monday
    assert stored["priority"] == "high"


def test_unknown_requests_get_help_and_errors_are_explained(user) -> None:
    answer = user.chat("what's the weather like?")
    assert answer["actions"] == []
    assert answer["reply"].startswith("I can manage your todos.")
    assert '"add buy milk tomorrow"' in answer["reply"]

    answer = user.chat("mark 987654 done")
    assert answer == {
        "reply": "Sorry, that didn't work: there is no todo #987654 in your list.",
        "actions": [],
    }


def test_chat_never_touches_another_users_todos(user, other_user) -> None:
    theirs = other_user.add("buy milk")
    answer = user.chat("delete the milk one")
    assert "couldn't find" in answer["reply"]
    user.chat(f"delete {theirs['id']}")
    assert [t["id"] for t in other_user.todos()] == [theirs["id"]]
