/**
 * bin/pagelab.mjs runs the built bundle (dist/, `npm run build`) when it is newer than every source
 * file, and the sources through tsx otherwise, so an edit is never run stale. Both give the same output.
 */
import { spawnSync } from "node:child_process";
import { statSync, utimesSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = `${ROOT}bin/pagelab.mjs`;
const STAMP = `${ROOT}dist/.built`;

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", PAGELAB_LAUNCH_INFO: "1", ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("the launcher", () => {
  it("runs dist/ when it is fresh, the sources when a source is newer, with the same answers", () => {
    const b = spawnSync(process.execPath, [`${ROOT}scripts/build.mjs`], { encoding: "utf8" });
    expect(b.status, b.stderr).toBe(0);
    const built = run(["map", "qemu:4G", "--json"]);
    expect(built.stderr).toMatch(/running dist\/ \(built\)/);
    expect(built.status).toBe(0);
    const t = statSync(STAMP).mtime;
    try {
      utimesSync(STAMP, new Date(0), new Date(0)); // older than every source: stale
      const src = run(["map", "qemu:4G", "--json"]);
      expect(src.stderr).toMatch(/running src\/ \(through tsx\)/);
      expect(src.stdout).toBe(built.stdout);
    } finally {
      utimesSync(STAMP, t, t);
    }
    const forced = run(["boot", "--map", "qemu:256M", "--json"], { PAGELAB_SOURCES: "1" });
    expect(forced.stderr).toMatch(/running src\//);
    const again = run(["boot", "--map", "qemu:256M", "--json"]);
    expect(again.stderr).toMatch(/running dist\//);
    const strip = (s: string) => s.replace(/"hostMs": \d+/, "");
    expect(strip(again.stdout)).toBe(strip(forced.stdout));
  }, 120_000);

  it("the built CLI loads a TypeScript design of one's own through tsx, and knows its errors", () => {
    const ok = run(["boot", "--map", "qemu:256M", "--pmm", `${ROOT}examples/first-fit.ts`, "--json"]);
    expect(ok.stderr).toMatch(/running dist\//);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).pmm).toBe("first-fit");
    // Its `fail` is another copy's PagelabError (dist/index.js loaded through tsx's namespace), the CLI's
    // the bundle's chunk: still a clear line and exit 2.
    const design = `${ROOT}test/fixtures/designs/refusing.ts`;
    const bad = run(["boot", "--map", "qemu:256M", "--pmm", design, "--no-validate"]);
    expect(bad.stderr).toMatch(/running dist\//);
    expect(bad.stderr).toMatch(/^pagelab: error \[MY_CODE\]: this design refuses to start$/m);
    expect(bad.status).toBe(2);
  }, 120_000);
});
