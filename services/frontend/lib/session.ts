/**
 * The signed-in user's bearer token, kept in localStorage.
 *
 * localStorage keeps the proxy a plain pass-through of the Authorization header (the backend
 * and chatbot both expect a bearer token) and survives page reloads. Only client components
 * call these functions.
 */

const TOKEN_KEY = "lumina.token";

export function loadToken(): string | null {
  return window.localStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string): void {
  window.localStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  window.localStorage.removeItem(TOKEN_KEY);
}
