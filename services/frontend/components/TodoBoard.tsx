"use client";

import { useRouter } from "next/navigation";
import { useCallback, useEffect, useState } from "react";
import { api, ApiError } from "@/lib/api-client";
import { clearToken, loadToken } from "@/lib/session";
import type { Todo, TodoDraft, User } from "@/lib/types";
import ChatPanel from "./ChatPanel";
import TodoForm from "./TodoForm";
import TodoItem from "./TodoItem";

/** Open todos first; within each group the earliest due date first, undated last. */
function byOpenThenDue(a: Todo, b: Todo): number {
  if (a.done !== b.done) return a.done ? 1 : -1;
  const da = a.due_date ?? "9999";
  const db = b.due_date ?? "9999";
  return da === db ? a.id - b.id : da < db ? -1 : 1;
}

export default function TodoBoard() {
  const router = useRouter();
  const [token, setToken] = useState<string | null>(null);
  const [user, setUser] = useState<User | null>(null);
  const [todos, setTodos] = useState<Todo[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  const signOut = useCallback(() => {
    clearToken();
    router.replace("/");
  }, [router]);

  /** An expired or revoked token sends the user back to the login page. */
  const handleError = useCallback(
    (err: unknown) => {
      if (err instanceof ApiError && err.status === 401) signOut();
      else setError(err instanceof Error ? err.message : "something went wrong");
    },
    [signOut],
  );

  const refresh = useCallback(
    async (current: string) => {
      try {
        setTodos(await api.listTodos(current));
        setError(null);
      } catch (err) {
        handleError(err);
      }
    },
    [handleError],
  );

  useEffect(() => {
    const stored = loadToken();
    if (!stored) {
      router.replace("/");
      return;
    }
    setToken(stored);
    api.me(stored).then(setUser, handleError);
    void refresh(stored);
  }, [router, refresh, handleError]);

  if (!token) return <p className="muted">Loading…</p>;

  const add = async (draft: TodoDraft) => {
    const created = await api.createTodo(token, draft);
    setTodos((list) => [...(list ?? []), created]);
  };
  const replace = (updated: Todo) =>
    setTodos((list) => (list ?? []).map((t) => (t.id === updated.id ? updated : t)));
  const run = (action: () => Promise<void>) => action().catch(handleError);

  return (
    <div className="board">
      <section className="card todos">
        <div className="row heading">
          <h1>{user?.name ? `${user.name}'s todos` : "My todos"}</h1>
          <span className="spacer" />
          {user && <span className="muted" data-testid="user-email">{user.email}</span>}
          <button type="button" className="ghost" onClick={signOut}>Log out</button>
        </div>
        <TodoForm submitLabel="Add" testId="add-todo-form" onSubmit={add} />
        {error && <p className="error" role="alert">{error}</p>}
        {todos === null ? (
          <p className="muted">Loading todos…</p>
        ) : todos.length === 0 ? (
          <p className="muted" data-testid="empty-list">Nothing to do yet. Add a todo above or ask the assistant.</p>
        ) : (
          <ul className="todo-list" data-testid="todo-list">
            {[...todos].sort(byOpenThenDue).map((todo) => (
              <TodoItem
                key={todo.id}
                todo={todo}
                onToggle={(t) => run(async () => replace(await api.setDone(token, t.id, !t.done)))}
                onSave={async (t, draft) => replace(await api.editTodo(token, t.id, draft))}
                onDelete={(t) =>
                  run(async () => {
                    await api.deleteTodo(token, t.id);
                    setTodos((list) => (list ?? []).filter((x) => x.id !== t.id));
                  })
                }
              />
            ))}
          </ul>
        )}
      </section>
      <ChatPanel token={token} onReply={() => void refresh(token)} />
    </div>
  );
}
