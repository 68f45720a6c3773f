#!/usr/bin/env node
// Launcher. In an installed package (no src/: the tarball ships dist/ only) it runs the built CLI. In a
// checkout it runs dist/ (`npm run build`) when it is newer than every source file, else the TypeScript
// sources through tsx's loader, so an edit is never run stale; a design of one's own that imports
// "pagelab" then gets the sources too (the package's pagelab-source condition), not an older dist/.
// PAGELAB_SOURCES=1 always runs the sources; PAGELAB_LAUNCH_INFO=1 says on stderr which one runs.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "dist", ".built");
// npm pack gives every file the same mtime (1985-10-26), so in an installed package "newer" means
// nothing: there, the absence of the sources says which to run.
const checkout = existsSync(join(root, "src", "cli", "main.ts"));

/** True when some file under `dir` changed after `t` (ms). */
function newerThan(dir, t) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() ? newerThan(p, t) : statSync(p).mtimeMs > t) return true;
  }
  return false;
}

if (!checkout && !existsSync(stamp)) {
  process.stderr.write(
    `pagelab: error [NOT_BUILT]: ${join(root, "dist")} is missing and there are no sources to run: this copy of pagelab was packed without its build (npm pack runs \`prepack\`, which builds it); reinstall it\n`,
  );
  process.exit(2);
}
const fresh =
  !checkout ||
  (process.env.PAGELAB_SOURCES !== "1" &&
    existsSync(stamp) &&
    !newerThan(join(root, "src"), statSync(stamp).mtimeMs));
if (process.env.PAGELAB_LAUNCH_INFO === "1")
  process.stderr.write(
    `pagelab: running ${fresh ? `dist/ (built${checkout ? "" : ", installed package"})` : "src/ (through tsx)"}\n`,
  );
if (fresh) await import("../dist/cli/main.js");
else {
  const { register } = await import("tsx/esm/api");
  register();
  // Registered after tsx, so it runs first: "pagelab" (a design's import) resolves to the sources.
  const { register: registerHooks } = await import("node:module");
  const hooks = `export async function resolve(s, c, next) {
    if (s !== "pagelab" && !s.startsWith("pagelab/")) return next(s, c);
    return next(s, { ...c, conditions: [...c.conditions, "pagelab-source"] });
  }`;
  registerHooks(`data:text/javascript,${encodeURIComponent(hooks)}`);
  await import("../src/cli/main.ts");
}
