#!/usr/bin/env node
// Launcher: runs the built CLI (dist/, `npm run build`) when it is newer than every source file, else
// the TypeScript sources through tsx's loader. PAGELAB_SOURCES=1 always runs the sources;
// PAGELAB_LAUNCH_INFO=1 says on stderr which one runs.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "dist", ".built");

/** True when some file under `dir` changed after `t` (ms). */
function newerThan(dir, t) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() ? newerThan(p, t) : statSync(p).mtimeMs > t) return true;
  }
  return false;
}

const fresh =
  process.env.PAGELAB_SOURCES !== "1" &&
  existsSync(stamp) &&
  !newerThan(join(root, "src"), statSync(stamp).mtimeMs);
if (process.env.PAGELAB_LAUNCH_INFO === "1")
  process.stderr.write(`pagelab: running ${fresh ? "dist/ (built)" : "src/ (through tsx)"}\n`);
if (fresh) await import("../dist/cli/main.js");
else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
