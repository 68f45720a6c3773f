/**
 * The floors of the house, lowest first. A module may import from its own floor and the floors below,
 * never from a floor above: the machine knows nothing of kernels, the kernel nothing of experiments,
 * experiments nothing of the faces (CLI, web server) that present them.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

export const FLOORS: { floor: string; prefix: string }[] = [
  { floor: "base", prefix: "errors.ts" },
  { floor: "base", prefix: "paths.ts" },
  { floor: "machine", prefix: "machine/" },
  { floor: "firmware", prefix: "firmware/" },
  { floor: "kernel", prefix: "kernel/" },
  { floor: "lab", prefix: "lab/" },
  { floor: "serve", prefix: "serve/" },
  { floor: "cli", prefix: "cli/" },
  { floor: "index", prefix: "index.ts" },
];

/** Which floors each floor may import from (besides its own). machine and firmware stand side by side. */
const MAY_IMPORT: Record<string, string[]> = {
  base: [],
  machine: ["base"],
  firmware: ["base"],
  kernel: ["base", "machine", "firmware"],
  lab: ["base", "machine", "firmware", "kernel"],
  serve: ["base", "machine", "firmware", "kernel", "lab"],
  cli: ["base", "machine", "firmware", "kernel", "lab", "serve"],
  index: ["base", "machine", "firmware", "kernel", "lab", "serve", "cli"],
};

/** The floor of a path relative to src/, or null outside every floor. */
export function floorOf(pathInSrc: string): string | null {
  const p = pathInSrc.split("\\").join("/");
  for (const f of FLOORS) if (p === f.prefix || p.startsWith(f.prefix)) return f.floor;
  return null;
}

/** Specifiers a module imports (relative ones only unless `all`): imports, re-exports, import("..."). */
export function importsOf(source: string, all = false): string[] {
  const out: string[] = [];
  const re =
    /(?:^|[\s;])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|^import\s+["']([^"']+)["']/gm;
  for (let m = re.exec(source); m !== null; m = re.exec(source)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (all || spec.startsWith(".")) out.push(spec);
  }
  return out;
}

export interface FloorViolation {
  file: string;
  imports: string;
  from: string;
  to: string;
}

/** Every upward import among `files` (path relative to src/ -> source text). */
export function floorViolations(files: Map<string, string>): FloorViolation[] {
  const out: FloorViolation[] = [];
  for (const [file, text] of files) {
    const from = floorOf(file);
    if (from === null) continue;
    for (const spec of importsOf(text)) {
      const target = join(dirname(file), spec).split("\\").join("/");
      const to = floorOf(target);
      if (to === null || to === from) continue;
      if (!MAY_IMPORT[from].includes(to)) out.push({ file, imports: spec, from, to });
    }
  }
  return out;
}

/** Every .ts file under `root` (src/), by path relative to it. */
export function sourceFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".ts")) files.set(relative(root, p), readFileSync(p, "utf8"));
    }
  };
  walk(resolve(root));
  return files;
}
