"""CRUD for the signed-in user's todos; other users' todos answer 404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from .. import todos
from ..deps import Conn, CurrentUser
from ..schemas import TodoCreate, TodoOut, TodoUpdate

router = APIRouter(prefix="/api/todos", tags=["todos"])


def _found(todo: dict[str, Any] | None, todo_id: int) -> dict[str, Any]:
    if todo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"todo {todo_id} not found")
    return todo


@router.get("", response_model=list[TodoOut])
def list_todos(user: CurrentUser, conn: Conn) -> list[dict[str, Any]]:
    return todos.list_todos(conn, user.id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TodoOut)
def create_todo(body: TodoCreate, user: CurrentUser, conn: Conn) -> dict[str, Any]:
    return todos.create_todo(
        conn, user.id, body.title, body.description, body.priority, body.due_date
    )


@router.get("/{todo_id}", response_model=TodoOut)
def get_todo(todo_id: int, user: CurrentUser, conn: Conn) -> dict[str, Any]:
    return _found(todos.get_todo(conn, user.id, todo_id), todo_id)


@router.patch("/{todo_id}", response_model=TodoOut)
def update_todo(todo_id: int, body: TodoUpdate, user: CurrentUser, conn: Conn) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return _found(todos.get_todo(conn, user.id, todo_id), todo_id)
    return _found(todos.update_todo(conn, user.id, todo_id, changes), todo_id)


@router.delete("/{todo_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_todo(todo_id: int, user: CurrentUser, conn: Conn) -> Response:
    if not todos.delete_todo(conn, user.id, todo_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"todo {todo_id} not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
