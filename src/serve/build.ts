/**
 * The explorer's page is a Vite build of web/ into web/dist. `pagelab serve` builds it when dist is
 * missing or older than any source file (so a fresh clone works with no extra step), through Vite's
 * JS API. The build goes to a private directory first and is then renamed into place, so two servers
 * starting at once never serve a half-written dist.
 */
import { packagePath } from "../paths.ts";
import { existsSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fail } from "../errors.ts";

export const WEB_DIR = packagePath("web");
export const DIST_DIR = join(WEB_DIR, "dist");

function newestSource(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    if (name === "dist" || name === "node_modules" || name.startsWith(".")) continue;
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestSource(p) : st.mtimeMs);
  }
  return newest;
}

/** Why the page must be (re)built, or null when web/dist is up to date. */
export function staleReason(): string | null {
  const index = join(DIST_DIR, "index.html");
  if (!existsSync(index)) return "web/dist is missing";
  if (newestSource(WEB_DIR) > statSync(index).mtimeMs) return "web/ changed since the last build";
  return null;
}

/** Build web/ into web/dist when stale; returns what happened, for the server's log line. */
export async function ensureWebBuilt(
  force = false,
): Promise<{ built: boolean; ms: number; why: string | null }> {
  const why = force ? "forced" : staleReason();
  if (!why) return { built: false, ms: 0, why: null };
  const t0 = performance.now();
  let build: typeof import("vite").build;
  try {
    ({ build } = await import("vite"));
  } catch (e) {
    return fail(
      "NO_VITE",
      `the page must be built (${why}) but Vite cannot be loaded (${(e as Error).message.split("\n")[0]}): run \`npm ci\` (it installs the dev dependencies) and start again`,
    );
  }
  const tmp = join(WEB_DIR, `.dist-${process.pid}-${Date.now()}`);
  try {
    await build({
      root: WEB_DIR,
      configFile: join(WEB_DIR, "vite.config.ts"),
      logLevel: "warn",
      build: { outDir: tmp, emptyOutDir: true },
    });
    rmSync(DIST_DIR, { recursive: true, force: true });
    renameSync(tmp, DIST_DIR);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { built: true, ms: performance.now() - t0, why };
}
