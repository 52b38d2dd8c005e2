/** Shapes of the backend's JSON (see the service contract in conventions.md). */

export type Priority = "low" | "medium" | "high";

export const PRIORITIES: readonly Priority[] = ["low", "medium", "high"];

export interface User {
  id: number;
  email: string;
  name: string | null;
}

export interface Todo {
  id: number;
  title: string;
  description: string | null;
  done: boolean;
  priority: Priority;
  due_date: string | null;
  created_at: string;
  updated_at: string;
}

/** Fields the user can set when creating or editing a todo. */
export interface TodoDraft {
  title: string;
  description: string;
  priority: Priority;
  due_date: string;
}

export interface ChatAction {
  tool: string;
  result: unknown;
}

export interface ChatReply {
  reply: string;
  actions: ChatAction[];
}
