/**
 * Server-side forwarding of `/api/*` to the backend.
 *
 * The browser cannot resolve cluster DNS names such as backend-service.lumina.svc.cluster.local,
 * so it only ever talks to this server, which relays each call to the backend. The backend URL
 * is read from the environment on every request (never inlined at build time) so one image runs
 * unchanged against any backend.
 */

/** Request headers worth relaying; hop-by-hop and host headers are deliberately left out. */
const FORWARDED_REQUEST_HEADERS = ["authorization", "content-type", "accept", "accept-language"];

/** Response headers relayed back to the browser. */
const FORWARDED_RESPONSE_HEADERS = ["content-type", "cache-control", "www-authenticate"];

/** Statuses that must not carry a body (the Response constructor rejects one). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** An LLM-backed chat reply can take a while; anything slower than this is treated as down. */
const UPSTREAM_TIMEOUT_MS = 60_000;

/**
 * The backend base URL without a trailing slash, or null when it is not configured.
 *
 * The variable is looked up through the `env` object passed in, not as the literal expression
 * `process.env.NEXT_PUBLIC_API_URL`, because Next.js replaces that literal at build time.
 */
export function backendBaseUrl(env: Record<string, string | undefined>): string | null {
  const raw = env["NEXT_PUBLIC_API_URL"]?.trim();
  return raw ? raw.replace(/\/+$/, "") : null;
}

function jsonError(status: number, detail: string): Response {
  return Response.json({ detail }, { status, headers: { "cache-control": "no-store" } });
}

function pickHeaders(source: Headers, names: readonly string[]): Headers {
  const picked = new Headers();
  for (const name of names) {
    const value = source.get(name);
    if (value !== null) picked.set(name, value);
  }
  return picked;
}

/** Relay one request to `${baseUrl}${pathname}${search}` and relay the answer back. */
export async function forwardToBackend(request: Request, baseUrl: string | null): Promise<Response> {
  if (!baseUrl) {
    return jsonError(500, "frontend misconfigured: NEXT_PUBLIC_API_URL is not set");
  }
  // Next.js hands over a normalised URL (the query form-encoded); its meaning is unchanged.
  const incoming = new URL(request.url);
  const target = `${baseUrl}${incoming.pathname}${incoming.search}`;
  const hasBody = request.method !== "GET" && request.method !== "HEAD";

  let upstream: Response;
  try {
    upstream = await fetch(target, {
      method: request.method,
      headers: pickHeaders(request.headers, FORWARDED_REQUEST_HEADERS),
      body: hasBody ? await request.arrayBuffer() : undefined,
      // A backend redirect (e.g. FastAPI's trailing-slash 307) points at a host the browser
      // cannot reach, so it is followed here instead of being handed back.
      redirect: "follow",
      cache: "no-store",
      signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
    });
  } catch (error) {
    const reason = error instanceof Error ? describeFetchError(error) : String(error);
    console.error(`backend unreachable: ${request.method} ${target}: ${reason}`);
    return jsonError(502, `backend unreachable at ${baseUrl}: ${reason}`);
  }

  const headers = pickHeaders(upstream.headers, FORWARDED_RESPONSE_HEADERS);
  const body =
    NULL_BODY_STATUSES.has(upstream.status) || request.method === "HEAD"
      ? null
      : await upstream.arrayBuffer();
  return new Response(body, { status: upstream.status, headers });
}

/** undici hides the useful part ("ECONNREFUSED") in `cause`; surface it. */
function describeFetchError(error: Error): string {
  const cause = (error as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as Error & { code?: string }).code;
    return code ? `${code} ${cause.message}` : cause.message;
  }
  return error.name === "TimeoutError" ? `no answer within ${UPSTREAM_TIMEOUT_MS / 1000}s` : error.message;
}
