/**
 * A big boot relaunches the CLI once with glibc's hugetlb tunable (2 MiB host pages for the RAM
 * model's slabs): the same output and exit status, one more process, never a loop.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { noRelaunchReason } from "../../src/cli/huge-pages.ts";

const BIN = fileURLToPath(new URL("../../bin/pagelab.mjs", import.meta.url));

function run(args: string[], env: Record<string, string> = {}) {
  const clean = { ...process.env };
  delete clean.GLIBC_TUNABLES;
  delete clean.PAGELAB_RELAUNCHED;
  delete clean.PAGELAB_HUGE_PAGES;
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...clean, NO_COLOR: "1", PAGELAB_LAUNCH_INFO: "1", ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Launcher lines on stderr: one per process that ran the CLI. */
const launches = (stderr: string) =>
  stderr.split("\n").filter((l) => l.startsWith("pagelab: running")).length;
const hostless = (s: string) => s.replace(/"hostMs": \d+(\.\d+)?/g, "");

describe("relaunch with 2 MiB host pages", () => {
  it("says why it would not relaunch", () => {
    expect(noRelaunchReason({ PAGELAB_HUGE_PAGES: "0" }, ["node", "pagelab"])).toBe("PAGELAB_HUGE_PAGES=0");
    expect(noRelaunchReason({ PAGELAB_RELAUNCHED: "1" }, ["node", "pagelab"])).toBe("already relaunched");
    expect(noRelaunchReason({ GLIBC_TUNABLES: "glibc.malloc.hugetlb=1" }, ["node", "pagelab"])).toMatch(
      /already sets it/,
    );
    expect(noRelaunchReason({}, ["node", "pagelab", "boot", "--map", "-"])).toBe("standard input was read");
  });

  it("a boot whose host estimate is big runs again, once, with the tunable; a small one does not", (ctx) => {
    const why = noRelaunchReason({}, ["node", "pagelab"]);
    if (why !== null) ctx.skip(`this host gives nothing to gain: ${why}`);
    // A free-page stack on 128 GiB: 8 bytes a frame, 256 MiB of host memory.
    const args = ["boot", "--map", "qemu:128G", "--pmm", "stack", "--json"];
    const big = run(args);
    expect(big.status, big.stderr).toBe(0);
    expect(launches(big.stderr)).toBe(2);
    const plain = run(args, { PAGELAB_HUGE_PAGES: "0" });
    expect(launches(plain.stderr)).toBe(1);
    expect(hostless(big.stdout)).toBe(hostless(plain.stdout));
    const small = run(["boot", "--map", "qemu:4G", "--pmm", "stack", "--json"]);
    expect(launches(small.stderr)).toBe(1);
  }, 120_000);
});
