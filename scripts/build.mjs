#!/usr/bin/env node
// `npm run build` (and `prepare`, so `npm ci` runs it): bundle the library (src/index.ts), the CLI and
// its worker threads into dist/ with esbuild (installed with tsx, a dependency), so `pagelab` starts
// without compiling TypeScript on every run. One ES module per entry, the shared code in chunks loaded
// on demand (each command's modules load only when it runs; the library and the CLI share their
// chunks, so a process that loads both has one copy of each module); packages stay external.
// bin/pagelab.mjs runs dist/ when it is newer than every file under src/, and the sources through tsx
// otherwise, so an edit is never run stale.
//
//   --types    also writes the library's declarations to dist/types (tsc, a dev dependency)
//   --web      also builds the explorer page (web/ into web/dist, Vite, a dev dependency)
//   --prepare  what `prepare` asks for (below)
//
// `prepack` runs --types --web, so `npm pack` and `npm publish` ship the declarations and the page.
// `prepare` builds only the JavaScript: it runs on every `npm ci`, including `npm ci --omit=dev` where
// neither tool is installed, and a checkout needs neither (tsc, vitest and the source launcher resolve
// "pagelab" to src/ through the pagelab-source condition; `pagelab serve` builds the page when it is
// missing or stale). Two exceptions: under `npm pack` / `npm publish` (npm runs prepare right after
// prepack) it does nothing, as everything was just built; and when npm packs this folder as a git
// dependency (pacote sets npm_package_resolved; it runs prepare, never prepack, with the dev
// dependencies installed) it builds the declarations and the page too.
//
// The new dist/ is written beside the old one and swapped in by rename, so a pagelab process starting
// meanwhile finds either the old build, the new one, or none (and runs the sources), never half of one.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
let lenient = false;
for (const a of args) {
  if (a !== "--types" && a !== "--web" && a !== "--prepare") {
    console.error(`pagelab build: unknown option ${a} (expected --types, --web, --prepare)`);
    process.exit(2);
  }
}
if (args.delete("--prepare")) {
  const command = process.env.npm_command;
  if (command === "pack" || command === "publish") {
    console.error(`pagelab build: nothing to do in prepare under npm ${command} (prepack built dist/)`);
    process.exit(0);
  }
  if (process.env.npm_package_resolved) {
    for (const a of ["--types", "--web"]) args.add(a);
    lenient = true; // without the dev dependencies, a package without declarations or page beats none
  }
}

let esbuild;
try {
  esbuild = await import("esbuild");
} catch {
  if (args.size > 0) {
    console.error("pagelab build: esbuild is not installed (it comes with tsx): run `npm ci`");
    process.exit(1);
  }
  console.error("pagelab build: esbuild is not installed; pagelab will run from its sources (tsx)");
  process.exit(0);
}

const out = join(root, "dist");
const tmp = join(root, `.dist-${process.pid}`);
rmSync(tmp, { recursive: true, force: true });
const t0 = performance.now();
// The stamp carries the build's START time: a source edited while esbuild runs is newer than the stamp,
// so the launcher runs the sources rather than a bundle that may predate the edit.
const started = new Date();
try {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: [
      "src/index.ts",
      "src/cli/main.ts",
      "src/lab/compare-worker.ts",
      "src/serve/session-worker.ts",
      "src/kernel/pmm/wasm/validate-worker.ts",
    ],
    outdir: tmp,
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
  if (args.has("--types")) emitTypes(join(tmp, "types"));
  writeFileSync(join(tmp, ".built"), `${started.toISOString()}\n`);
  utimesSync(join(tmp, ".built"), started, started);
  const old = join(root, `.dist-old-${process.pid}`);
  try {
    renameSync(out, old);
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
  renameSync(tmp, out);
  rmSync(old, { recursive: true, force: true });
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
let files = 0;
const count = (d) => {
  for (const n of readdirSync(d)) statSync(join(d, n)).isDirectory() ? count(join(d, n)) : files++;
};
count(out);
console.error(`pagelab build: dist/ (${files} files) in ${Math.round(performance.now() - t0)} ms`);
if (args.has("--web")) await buildWeb();

/**
 * The library's declarations, from src/index.ts and what it reaches (tsconfig.types.json), with the
 * sources' `./x.ts` specifiers rewritten to `./x.js`: the form every consumer's moduleResolution
 * (node16, nodenext, bundler) resolves to the `.d.ts` beside it.
 */
function emitTypes(dir) {
  const t = performance.now();
  let tsc;
  try {
    tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
  } catch {
    console.error("pagelab build: --types needs typescript (a dev dependency): run `npm ci` first");
    if (lenient) return;
    process.exit(1);
  }
  const r = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.types.json"), "--outDir", dir], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.status !== 0) {
    console.error(`pagelab build: tsc failed to emit the library's declarations (status ${r.status})`);
    process.exit(1);
  }
  let n = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".d.ts")) {
        const s = readFileSync(p, "utf8");
        writeFileSync(p, s.replace(/((?:from |import\()["']\.{1,2}\/[^"']*?)\.ts(["'])/g, "$1.js$2"));
        n++;
      }
    }
  };
  walk(dir);
  console.error(`pagelab build: dist/types (${n} declaration files) in ${Math.round(performance.now() - t)} ms`);
}

/** The explorer's page (src/serve/build.ts builds the same on demand in a checkout). */
async function buildWeb() {
  const t = performance.now();
  let vite;
  try {
    vite = await import("vite");
  } catch {
    console.error("pagelab build: --web needs vite (a dev dependency): run `npm ci` first");
    if (lenient) return;
    process.exit(1);
  }
  const web = join(root, "web");
  await vite.build({ root: web, configFile: join(web, "vite.config.ts"), logLevel: "warn" });
  console.error(`pagelab build: web/dist in ${Math.round(performance.now() - t)} ms`);
}
