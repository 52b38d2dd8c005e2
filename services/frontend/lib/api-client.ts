/**
 * Browser-side calls to this frontend's own `/api/*` proxy.
 *
 * Every call goes to the same origin; the server relays it to the backend. Errors carry the
 * backend's message so forms can show it as-is.
 */
import type { ChatReply, Todo, TodoDraft, User } from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** FastAPI answers `{"detail": "..."}` or, for validation errors, `{"detail": [{msg, loc}]}`. */
function describeError(status: number, payload: unknown): string {
  const detail = (payload as { detail?: unknown } | null)?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    const messages = detail
      .map((item: { msg?: string; loc?: unknown[] }) => {
        const field = Array.isArray(item.loc) ? item.loc[item.loc.length - 1] : undefined;
        return field && item.msg ? `${String(field)}: ${item.msg}` : item.msg;
      })
      .filter(Boolean);
    if (messages.length) return messages.join("; ");
  }
  return `request failed (HTTP ${status})`;
}

async function request<T>(method: string, path: string, token: string | null, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";

  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "cannot reach the Lumina server; check your connection");
  }
  const text = await response.text();
  let payload: unknown = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, describeError(response.status, payload));
  return payload as T;
}

/** Empty form fields mean "not set" to the backend. */
function draftToPayload(draft: TodoDraft) {
  return {
    title: draft.title.trim(),
    description: draft.description.trim() || null,
    priority: draft.priority,
    due_date: draft.due_date || null,
  };
}

export const api = {
  register: (email: string, password: string, name: string) =>
    request<User>("POST", "/api/auth/register", null, { email, password, name: name.trim() || null }),
  login: (email: string, password: string) =>
    request<{ access_token: string; token_type: string }>("POST", "/api/auth/login", null, {
      email,
      password,
    }),
  me: (token: string) => request<User>("GET", "/api/auth/me", token),
  listTodos: (token: string) => request<Todo[]>("GET", "/api/todos", token),
  createTodo: (token: string, draft: TodoDraft) =>
    request<Todo>("POST", "/api/todos", token, draftToPayload(draft)),
  editTodo: (token: string, id: number, draft: TodoDraft) =>
    request<Todo>("PATCH", `/api/todos/${id}`, token, draftToPayload(draft)),
  setDone: (token: string, id: number, done: boolean) =>
    request<Todo>("PATCH", `/api/todos/${id}`, token, { done }),
  deleteTodo: (token: string, id: number) => request<null>("DELETE", `/api/todos/${id}`, token),
  chat: (token: string, message: string) => request<ChatReply>("POST", "/api/chat", token, { message }),
};
