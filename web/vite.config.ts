// The explorer's page: Preact through TypeScript's own JSX transform (no Vite plugin needed).
// `pagelab serve` builds with this file through Vite's JS API; `npx vite build web` works too.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 200 },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
});
