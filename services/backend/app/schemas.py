"""Request and response bodies; validation failures become 422 with the offending field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

Priority = Literal["low", "medium", "high"]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


class Strict(BaseModel):
    """Unknown fields are an error: a typo such as `completed` must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    email: EmailStr
    password: Password
    name: Name | None = None


class LoginIn(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)]
    password: Annotated[str, StringConstraints(max_length=128)]


class UserOut(BaseModel):
    id: int
    email: str
    name: str | None


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TodoCreate(Strict):
    title: Title
    description: Description | None = None
    priority: Priority = "medium"
    due_date: date | None = None


class TodoUpdate(Strict):
    """PATCH body: any subset of fields; title, done and priority may not be null."""

    title: Title | None = None
    description: Description | None = None
    done: bool | None = None
    priority: Priority | None = None
    due_date: date | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> TodoUpdate:
        for name in ("title", "done", "priority"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TodoOut(BaseModel):
    id: int
    title: str
    description: str | None
    done: bool
    priority: Priority
    due_date: date | None
    created_at: str
    updated_at: str


class ChatIn(Strict):
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class ChatAction(BaseModel):
    tool: str
    result: Any = None


class ChatOut(BaseModel):
    reply: str
    actions: list[ChatAction] = Field(default_factory=list)
