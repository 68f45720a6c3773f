#!/usr/bin/env node
// `npm run build` (and `prepare`, so `npm ci` runs it): bundle the CLI and its worker threads into
// dist/ with esbuild (installed with tsx), so `pagelab` starts without compiling TypeScript on every
// run. One ES module per entry, the shared code in chunks loaded on demand (each command's modules
// load only when it runs); packages stay external. bin/pagelab.mjs runs dist/ when it is newer than
// every file under src/, and the sources through tsx otherwise, so an edit is never run stale.
import { readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let esbuild;
try {
  esbuild = await import("esbuild");
} catch {
  console.error("pagelab build: esbuild is not installed; pagelab will run from its sources (tsx)");
  process.exit(0);
}

const out = join(root, "dist");
rmSync(out, { recursive: true, force: true });
const t0 = performance.now();
await esbuild.build({
  absWorkingDir: root,
  entryPoints: [
    "src/cli/main.ts",
    "src/lab/compare-worker.ts",
    "src/serve/session-worker.ts",
    "src/kernel/pmm/wasm/validate-worker.ts",
  ],
  outdir: "dist",
  outbase: "src",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  chunkNames: "chunks/[name]-[hash]",
  logLevel: "warning",
});
writeFileSync(join(out, ".built"), `${new Date().toISOString()}\n`);
let files = 0;
const count = (d) => {
  for (const n of readdirSync(d)) statSync(join(d, n)).isDirectory() ? count(join(d, n)) : files++;
};
count(out);
console.error(`pagelab build: dist/ (${files} files) in ${Math.round(performance.now() - t0)} ms`);
