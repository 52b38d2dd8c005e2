import path from "node:path";
import { fileURLToPath } from "node:url";

// Pin the project root so output tracing never climbs into a parent directory that happens to
// hold another lockfile: the standalone server must land at .next/standalone/server.js.
const root = path.dirname(fileURLToPath(import.meta.url));

/** @type {import('next').NextConfig} */
const nextConfig = {
  // The image ships only server.js plus the traced node_modules, not the whole dependency tree.
  output: "standalone",
  outputFileTracingRoot: root,
  turbopack: { root },
  poweredByHeader: false,
  reactStrictMode: true,
};

export default nextConfig;
