"""The todo tools: one definition serves the MCP server, the LLM and the offline interpreter.

Each tool is an argument model (its JSON schema is what MCP clients and the model see) plus an
async function that performs it through a user's `TodoBackend`. Every tool returns a JSON
object so results look the same over MCP, in /chat actions and in model tool messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatbot.backend_client import BackendError, TodoBackend

Priority = Literal["low", "medium", "high"]


class ToolError(Exception):
    """A tool call failed; the message is written for the user (or model) to act on."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListTodosArgs(_Args):
    status: Literal["all", "open", "done"] = Field(
        "all", description="Which todos to return: all, only open ones, or only done ones."
    )


class AddTodoArgs(_Args):
    title: str = Field(min_length=1, max_length=200, description="Short title of the todo.")
    description: str | None = Field(None, max_length=2000, description="Optional details.")
    priority: Priority = Field("medium", description="low, medium or high.")
    due_date: date | None = Field(None, description="Due date as YYYY-MM-DD, or null.")


class TodoIdArgs(_Args):
    todo_id: int = Field(ge=1, description="The todo's id (the #number shown in lists).")


class UpdateTodoArgs(TodoIdArgs):
    title: str | None = Field(None, min_length=1, max_length=200, description="New title.")
    description: str | None = Field(None, max_length=2000, description="New details.")
    priority: Priority | None = Field(None, description="New priority: low, medium or high.")
    due_date: date | None = Field(None, description="New due date as YYYY-MM-DD.")
    done: bool | None = Field(None, description="true marks it done, false reopens it.")


async def list_todos(backend: TodoBackend, args: ListTodosArgs) -> dict[str, Any]:
    todos = await backend.list_todos()
    if args.status != "all":
        want_done = args.status == "done"
        todos = [t for t in todos if bool(t.get("done")) == want_done]
    return {"todos": todos, "count": len(todos)}


async def add_todo(backend: TodoBackend, args: AddTodoArgs) -> dict[str, Any]:
    return await backend.create_todo(args.model_dump(mode="json", exclude_none=True))


async def complete_todo(backend: TodoBackend, args: TodoIdArgs) -> dict[str, Any]:
    return await backend.update_todo(args.todo_id, {"done": True})


async def update_todo(backend: TodoBackend, args: UpdateTodoArgs) -> dict[str, Any]:
    # exclude_unset (not exclude_none) so an explicit null clears a due date or description.
    fields = args.model_dump(mode="json", exclude_unset=True, exclude={"todo_id"})
    if not fields:
        raise ToolError("update_todo needs at least one field to change")
    return await backend.update_todo(args.todo_id, fields)


async def delete_todo(backend: TodoBackend, args: TodoIdArgs) -> dict[str, Any]:
    todo = await backend.get_todo(args.todo_id)  # so the reply can say what was removed
    await backend.delete_todo(args.todo_id)
    return {"deleted": True, "id": args.todo_id, "title": todo.get("title")}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args_model: type[_Args]
    run: Callable[[TodoBackend, Any], Awaitable[dict[str, Any]]]

    def input_schema(self) -> dict[str, Any]:
        return self.args_model.model_json_schema()


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "list_todos",
            "List the user's todos with id, title, done, priority and due date.",
            ListTodosArgs,
            list_todos,
        ),
        ToolSpec("add_todo", "Add a todo to the user's list.", AddTodoArgs, add_todo),
        ToolSpec("complete_todo", "Mark a todo as done by its id.", TodoIdArgs, complete_todo),
        ToolSpec(
            "update_todo",
            "Change a todo's title, description, priority, due date or done state by its id.",
            UpdateTodoArgs,
            update_todo,
        ),
        ToolSpec("delete_todo", "Delete a todo by its id.", TodoIdArgs, delete_todo),
    )
}


async def run_tool(backend: TodoBackend, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Validate `arguments` for tool `name` and run it; every failure becomes a ToolError."""
    spec = TOOLS.get(name)
    if spec is None:
        raise ToolError(f"unknown tool {name!r}; available: {', '.join(TOOLS)}")
    try:
        args = spec.args_model.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ToolError(f"invalid arguments for {name}: {problems}") from exc
    try:
        return await spec.run(backend, args)
    except BackendError as exc:
        raise ToolError(str(exc)) from exc
