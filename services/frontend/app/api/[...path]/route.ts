import { backendBaseUrl, forwardToBackend } from "@/lib/backend-proxy";

// Every call must reach the backend live and read NEXT_PUBLIC_API_URL at request time.
export const dynamic = "force-dynamic";
export const runtime = "nodejs";

function handle(request: Request): Promise<Response> {
  return forwardToBackend(request, backendBaseUrl(process.env));
}

export {
  handle as GET,
  handle as POST,
  handle as PUT,
  handle as PATCH,
  handle as DELETE,
  handle as HEAD,
  handle as OPTIONS,
};
