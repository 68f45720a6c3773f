/**
 * What users get: `npm pack`, then `npm install ./pagelab-*.tgz` in an empty folder (no repository, no
 * dev dependencies), then `npx pagelab boot`, `compare --shard` and `compare merge`, `serve`, the
 * library by name and its declarations from a TypeScript consumer. The pack runs in a copy of the
 * package's files (node_modules linked) so its prepack build never swaps dist/ under the other tests.
 * npm installs the dependencies from its cache or the registry; under CI=true a pack or install that
 * cannot run fails the test.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IN_CI, toolFailed } from "../tools.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** What the build and the tarball need from the checkout (package.json `files` plus the build's inputs). */
const COPY = [
  "package.json",
  "package-lock.json",
  "tsconfig.json",
  "tsconfig.types.json",
  "README.md",
  "LICENSE",
  "scripts",
  "src",
  "web",
  "bin",
  "include",
  "examples",
  "corpus",
];
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";

let tmp = "";
let app = "";
let tarball = "";
let setupError = "";
const timings: Record<string, number> = {};

function sh(cmd: string, args: string[], cwd: string, timeout = 90_000) {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: "utf8",
    timeout,
    env: { ...process.env, NO_COLOR: "1", npm_config_audit: "false", npm_config_fund: "false" },
  });
  return { ...r, ms: performance.now() - t0, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ?? ""}` };
}

/** `npx pagelab …` in the installed app (npx finds node_modules/.bin/pagelab, as a user's shell does). */
function pagelab(args: string[], timeout = 60_000) {
  return sh("npx", ["--no-install", "pagelab", ...args], app, timeout);
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "pagelab-package-"));
  const src = join(tmp, "src");
  mkdirSync(src);
  for (const name of COPY) {
    if (!existsSync(join(ROOT, name))) continue;
    cpSync(join(ROOT, name), join(src, name), {
      recursive: true,
      filter: (p) => !/[\\/](node_modules|dist|\.dist-[^\\/]*)$/.test(p),
    });
  }
  symlinkSync(join(ROOT, "node_modules"), join(src, "node_modules"), "dir");
  const packed = sh(NPM, ["pack", "--pack-destination", tmp], src, 120_000);
  timings.pack = packed.ms;
  if (packed.status !== 0) {
    setupError = `npm pack failed (status ${packed.status}):\n${packed.out}`;
    return;
  }
  tarball = join(tmp, readdirSync(tmp).find((n) => /^pagelab-.*\.tgz$/.test(n)) ?? "missing.tgz");
  app = join(tmp, "app");
  mkdirSync(app);
  writeFileSync(
    join(app, "package.json"),
    `${JSON.stringify({ name: "app", private: true, type: "module" })}\n`,
  );
  const inst = sh(NPM, ["install", tarball], app, 120_000);
  timings.install = inst.ms;
  if (inst.status !== 0) setupError = `npm install ${tarball} failed (status ${inst.status}):\n${inst.out}`;
}, 240_000);

afterAll(() => {
  if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
  if (Object.keys(timings).length > 0)
    console.log(
      `package: ${Object.entries(timings)
        .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
        .join(", ")}`,
    );
});

/** Each test first needs the pack and the install; their failure fails it under CI, skips it elsewhere. */
function ready(ctx: { skip: (note?: string) => void }): void {
  if (setupError !== "") {
    if (IN_CI || !/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i.test(setupError))
      throw new Error(setupError);
    toolFailed(ctx, `cannot install the package here (no registry?): ${setupError.split("\n")[1]}`);
  }
}

describe("the npm package", () => {
  it("packs what a user needs and nothing of the repository's", (ctx) => {
    ready(ctx);
    const list = sh("tar", ["tzf", tarball], tmp).stdout.split("\n");
    const has = (p: string) => list.includes(`package/${p}`);
    for (const p of [
      "bin/pagelab.mjs",
      "dist/.built",
      "dist/cli/main.js",
      "dist/index.js",
      "dist/types/index.d.ts",
      "dist/lab/compare-worker.js",
      "dist/serve/session-worker.js",
      "dist/kernel/pmm/wasm/validate-worker.js",
      "include/pagelab/pmm.h",
      "web/dist/index.html",
      "examples/first-fit.ts",
      "README.md",
    ])
      expect(has(p), p).toBe(true);
    if (existsSync(join(ROOT, "corpus")))
      expect(list.some((p) => p.startsWith("package/corpus/"))).toBe(true);
    expect(list.filter((p) => /^package\/(src|test|bench|scripts|node_modules)\//.test(p))).toEqual([]);
    // The installed copy has no dev dependency.
    for (const dev of ["typescript", "vite", "vitest", "@biomejs/biome"])
      expect(existsSync(join(app, "node_modules", dev)), dev).toBe(false);
  });

  it("npx pagelab boot runs the built CLI of the installed package (its mtimes all 1985)", (ctx) => {
    ready(ctx);
    const r = sh("npx", ["--no-install", "pagelab", "boot", "--map", "qemu:256M", "--json"], app);
    expect(r.status, r.out).toBe(0);
    expect(JSON.parse(r.stdout).freePagesAfterBoot).toBeGreaterThan(60_000);
    const info = spawnSync("npx", ["--no-install", "pagelab", "--version"], {
      cwd: app,
      encoding: "utf8",
      env: { ...process.env, PAGELAB_LAUNCH_INFO: "1" },
    });
    expect(info.stderr).toMatch(/running dist\/ \(built, installed package\)/);
    const first = pagelab([
      "boot",
      "--pmm",
      "node_modules/pagelab/examples/first-fit.ts",
      "--map",
      "qemu:256M",
    ]);
    expect(first.status, first.out).toBe(0);
  });

  it("npx pagelab compare --shard K/N writes its slice of a sweep, and compare merge the report", (ctx) => {
    ready(ctx);
    const sweep =
      "--maps qemu:256M --pmm stack,buddy --kmap direct --workload page-churn --ops 200 --sweep none";
    for (const k of [1, 2]) {
      const out = join(tmp, `shard-${k}`);
      const r = pagelab(
        ["compare", ...sweep.split(" "), "--jobs", "1", "--shard", `${k}/2`, "--out", out],
        90_000,
      );
      expect(r.status, r.out).toBe(0);
      expect(existsSync(join(out, "manifest.json")), `shard ${k}'s manifest.json`).toBe(true);
    }
    const merged = join(tmp, "merged");
    const m = pagelab(["compare", "merge", join(tmp, "shard-1"), join(tmp, "shard-2"), "--out", merged]);
    expect(m.status, m.out).toBe(0);
    for (const f of ["results.json", "report.md", "report.html"])
      expect(existsSync(join(merged, f)), f).toBe(true);
    expect(readFileSync(join(merged, "report.md"), "utf8")).toMatch(/buddy/);
  }, 120_000);

  it("npx pagelab serve finds its built page and boots through its worker", async (ctx) => {
    ready(ctx);
    const child: ChildProcess = spawn("npx", ["--no-install", "pagelab", "serve", "--port", "0"], {
      cwd: app,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    try {
      let said = "";
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`serve did not start: ${said}`)), 30_000);
        const take = (b: Buffer) => {
          said += b.toString();
          const m = said.match(/http:\/\/127\.0\.0\.1:\d+\//);
          if (m) {
            clearTimeout(timer);
            resolve(m[0]);
          }
        };
        child.stdout?.on("data", take);
        child.stderr?.on("data", take);
        child.on("exit", (code) => reject(new Error(`serve exited (${code}): ${said}`)));
      });
      expect(said).not.toMatch(/build|vite/i);
      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<!doctype html>/i);
      const boot = await fetch(`${url}api/boot`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ map: "qemu:256M", pmm: "buddy", kmap: "direct", levels: 4 }),
      });
      expect(boot.status, await boot.clone().text()).toBe(200);
      expect(await boot.json()).toHaveProperty("session");
    } finally {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGTERM");
    }
  }, 60_000);

  it("the library imports by name and its declarations type-check a TypeScript consumer", (ctx) => {
    ready(ctx);
    writeFileSync(
      join(app, "consumer.ts"),
      `import { bootKernel, getDesign, PagelabError, type PmmDesign } from "pagelab";
const r = bootKernel({ map: "qemu:256M", pmm: "bitmap", kmap: "recursive" });
const free: number = r.freePagesAfterBoot;
const d: PmmDesign = getDesign("buddy");
// @ts-expect-error: a map is a string
export const never = () => bootKernel({ map: 42 });
const e = new PagelabError("X", "y");
console.log(free > 0, d.name, e.code, e instanceof PagelabError);
`,
    );
    // NodeNext: the strictest resolution for an ES module package (exports' types condition, .js specifiers).
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        files: ["consumer.ts"],
      }),
    );
    const tsc = sh(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "."], app);
    expect(tsc.status, tsc.out).toBe(0);
    const run = sh(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { bootKernel, getDesign, PagelabError } from "pagelab";
         const r = bootKernel({ map: "qemu:256M", pmm: "bitmap", kmap: "recursive" });
         console.log(r.freePagesAfterBoot > 0, getDesign("buddy").name, new PagelabError("X", "y") instanceof PagelabError);`,
      ],
      app,
    );
    expect(run.status, run.out).toBe(0);
    expect(run.stdout.trim()).toBe("true buddy true");
  });
});
