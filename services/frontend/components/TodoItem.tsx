"use client";

import { useState } from "react";
import type { Todo, TodoDraft } from "@/lib/types";
import TodoForm from "./TodoForm";

interface Props {
  todo: Todo;
  onToggle: (todo: Todo) => Promise<void>;
  onSave: (todo: Todo, draft: TodoDraft) => Promise<void>;
  onDelete: (todo: Todo) => Promise<void>;
}

function toDraft(todo: Todo): TodoDraft {
  return {
    title: todo.title,
    description: todo.description ?? "",
    priority: todo.priority,
    due_date: todo.due_date ? todo.due_date.slice(0, 10) : "",
  };
}

/** Overdue only matters for open todos; dates compare as ISO strings in local time. */
function isOverdue(todo: Todo): boolean {
  if (todo.done || !todo.due_date) return false;
  const today = new Date();
  const local = `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, "0")}-${String(today.getDate()).padStart(2, "0")}`;
  return todo.due_date.slice(0, 10) < local;
}

export default function TodoItem({ todo, onToggle, onSave, onDelete }: Props) {
  const [editing, setEditing] = useState(false);

  if (editing) {
    return (
      <li className="todo editing" data-testid={`todo-${todo.id}`}>
        <TodoForm
          initial={toDraft(todo)}
          submitLabel="Save"
          testId="edit-todo-form"
          onSubmit={async (draft) => {
            await onSave(todo, draft);
            setEditing(false);
          }}
          onCancel={() => setEditing(false)}
        />
      </li>
    );
  }

  return (
    <li className={`todo${todo.done ? " done" : ""}`} data-testid={`todo-${todo.id}`}
      data-done={todo.done ? "true" : "false"}>
      <input type="checkbox" checked={todo.done} aria-label={`Mark "${todo.title}" done`}
        onChange={() => void onToggle(todo)} />
      <div className="todo-body">
        <div className="todo-title">
          <span className="title">{todo.title}</span>
          <span className={`badge ${todo.priority}`}>{todo.priority}</span>
          {todo.due_date && (
            <span className={`due${isOverdue(todo) ? " overdue" : ""}`}>due {todo.due_date.slice(0, 10)}</span>
          )}
        </div>
        {todo.description && <p className="description">{todo.description}</p>}
      </div>
      <div className="todo-actions">
        <button type="button" className="ghost" onClick={() => setEditing(true)}>Edit</button>
        <button type="button" className="ghost danger" onClick={() => void onDelete(todo)}>Delete</button>
      </div>
    </li>
  );
}
