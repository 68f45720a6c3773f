/**
 * Where pagelab's own files are, found the same way from the sources (run through tsx) and from the
 * built bundle (dist/, where every module's URL is a chunk's): the package root is the nearest folder
 * above this module whose package.json is pagelab's.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

function findRoot(from: string): string {
  for (let d = dirname(from); ; ) {
    const pkg = join(d, "package.json");
    if (existsSync(pkg) && /"name":\s*"pagelab"/.test(readFileSync(pkg, "utf8"))) return d;
    const up = dirname(d);
    if (up === d) throw new Error(`pagelab: no package.json of pagelab above ${from}`);
    d = up;
  }
}

const HERE = fileURLToPath(import.meta.url);

/** The package's root folder. */
export const ROOT = findRoot(HERE);

/** True when running from the built bundle (dist/), false from the sources. */
export const BUILT = HERE.startsWith(join(ROOT, "dist") + sep);

/** A file or folder of the package, by its path from the root (`include`, `web`, `src/lab/qemu/probe`). */
export function packagePath(rel: string): string {
  return join(ROOT, rel);
}

/**
 * The entry of a worker thread, by its module's path under src/ without extension: the bundle's
 * `dist/NAME.js`, or from the sources `src/NAME.mjs`, which registers tsx for the worker (Node 20 does
 * not pass a loader on to workers) and loads `src/NAME.ts`.
 */
export function workerUrl(name: string): URL {
  return pathToFileURL(BUILT ? join(ROOT, "dist", `${name}.js`) : join(ROOT, "src", `${name}.mjs`));
}
