"use client";

import { type FormEvent, useState } from "react";
import { PRIORITIES, type Priority, type TodoDraft } from "@/lib/types";

export const EMPTY_DRAFT: TodoDraft = { title: "", description: "", priority: "medium", due_date: "" };

interface Props {
  initial?: TodoDraft;
  submitLabel: string;
  testId: string;
  /** Resolves when saved; rejects with a message to show. The form clears only for new todos. */
  onSubmit: (draft: TodoDraft) => Promise<void>;
  onCancel?: () => void;
}

/** One form for both adding and editing, so the two can never drift apart. */
export default function TodoForm({ initial, submitLabel, testId, onSubmit, onCancel }: Props) {
  const [draft, setDraft] = useState<TodoDraft>(initial ?? EMPTY_DRAFT);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const set = <K extends keyof TodoDraft>(key: K, value: TodoDraft[K]) =>
    setDraft((current) => ({ ...current, [key]: value }));

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!draft.title.trim()) {
      setError("title: give the todo a title");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await onSubmit(draft);
      if (!initial) setDraft(EMPTY_DRAFT);
    } catch (err) {
      setError(err instanceof Error ? err.message : "could not save the todo");
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} className="todo-form" data-testid={testId}>
      <input name="title" placeholder="What needs doing?" aria-label="Title" value={draft.title}
        onChange={(e) => set("title", e.target.value)} />
      <textarea name="description" placeholder="Details (optional)" aria-label="Description" rows={2}
        value={draft.description} onChange={(e) => set("description", e.target.value)} />
      <div className="row">
        <label className="inline">
          Priority
          <select name="priority" value={draft.priority}
            onChange={(e) => set("priority", e.target.value as Priority)}>
            {PRIORITIES.map((p) => (
              <option key={p} value={p}>{p}</option>
            ))}
          </select>
        </label>
        <label className="inline">
          Due
          <input type="date" name="due_date" value={draft.due_date}
            onChange={(e) => set("due_date", e.target.value)} />
        </label>
        <span className="spacer" />
        {onCancel && (
          <button type="button" className="ghost" onClick={onCancel}>Cancel</button>
        )}
        <button type="submit" disabled={busy}>{submitLabel}</button>
      </div>
      {error && <p className="error" role="alert">{error}</p>}
    </form>
  );
}
