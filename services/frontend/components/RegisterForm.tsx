"use client";

import Link from "next/link";
import { useRouter } from "next/navigation";
import { type FormEvent, useState } from "react";
import { api, ApiError } from "@/lib/api-client";
import { saveToken } from "@/lib/session";

export default function RegisterForm() {
  const router = useRouter();
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function onSubmit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.register(email.trim(), password, name);
      // Signing in right away saves the user typing the same credentials twice.
      const { access_token } = await api.login(email.trim(), password);
      saveToken(access_token);
      router.push("/todos");
    } catch (err) {
      setError(err instanceof ApiError ? err.message : "registration failed");
      setBusy(false);
    }
  }

  return (
    <section className="card narrow">
      <h1>Create your account</h1>
      <form onSubmit={onSubmit} className="stack" data-testid="register-form">
        <label>
          Name <span className="muted">(optional)</span>
          <input name="name" autoComplete="name" value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <label>
          Email
          <input type="email" name="email" autoComplete="email" required value={email}
            onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input type="password" name="password" autoComplete="new-password" required minLength={8}
            value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>{busy ? "Creating…" : "Create account"}</button>
      </form>
      <p className="muted">
        Already registered? <Link href="/">Log in</Link>
      </p>
    </section>
  );
}
