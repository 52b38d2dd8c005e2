"use client";

import { type FormEvent, useEffect, useRef, useState } from "react";
import { api } from "@/lib/api-client";

interface Message {
  from: "you" | "assistant" | "error";
  text: string;
}

interface Props {
  token: string;
  /** The assistant may have added or changed todos; the list reloads after each reply. */
  onReply: () => void;
}

export default function ChatPanel({ token, onReply }: Props) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [input, setInput] = useState("");
  const [busy, setBusy] = useState(false);
  const logRef = useRef<HTMLOListElement>(null);

  useEffect(() => {
    logRef.current?.scrollTo({ top: logRef.current.scrollHeight });
  }, [messages]);

  async function send(event: FormEvent) {
    event.preventDefault();
    const text = input.trim();
    if (!text || busy) return;
    setInput("");
    setBusy(true);
    setMessages((m) => [...m, { from: "you", text }]);
    try {
      const { reply } = await api.chat(token, text);
      setMessages((m) => [...m, { from: "assistant", text: reply }]);
      onReply();
    } catch (err) {
      setMessages((m) => [...m, { from: "error", text: err instanceof Error ? err.message : "chat failed" }]);
    } finally {
      setBusy(false);
    }
  }

  return (
    <aside className="card chat" data-testid="chat-panel">
      <h2>Assistant</h2>
      <ol className="chat-log" ref={logRef} aria-live="polite">
        {messages.length === 0 && (
          <li className="muted">Try “add buy milk tomorrow” or “what’s on my list”.</li>
        )}
        {messages.map((m, i) => (
          <li key={i} className={`msg ${m.from}`} data-testid={`chat-${m.from}`}>{m.text}</li>
        ))}
        {busy && <li className="msg assistant muted">…</li>}
      </ol>
      <form onSubmit={send} className="row" data-testid="chat-form">
        <input name="message" placeholder="Ask the assistant" aria-label="Chat message" value={input}
          onChange={(e) => setInput(e.target.value)} autoComplete="off" />
        <button type="submit" disabled={busy || !input.trim()}>Send</button>
      </form>
    </aside>
  );
}
