/**
 * `pagelab compare` refuses bad input before any work: every map, sweep entry, trace, design file and
 * the output directory are checked up front (exit 2, one line naming the option and the file or value,
 * no output directory written); a run whose every row failed exits 1.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { type CompareOptions, prepareCompare, type ResultRow } from "../../src/lab/compare.ts";
import { pagelab } from "../cli/run.ts";

describe("pagelab compare: usage errors are refused up front", () => {
  const dir = mkdtempSync(join(tmpdir(), "pagelab-cmp-refuse-"));
  const aFile = join(dir, "a-file");
  writeFileSync(aFile, "not a directory\n");
  const noEvents = join(dir, "empty.trace");
  writeFileSync(noEvents, "# tracer: nop\n#\n");
  const broken = join(dir, "broken-design.ts");
  writeFileSync(broken, "export default {{{ this is not TypeScript\n");
  const outFor = (what: string) => join(dir, `out-${what.replace(/\W+/g, "-")}`);

  // Through the binary: exit 2, exactly one line, no stack trace, nothing written.
  const cli: [string, string[], RegExp][] = [
    [
      "--out /etc/passwd (a file)",
      ["--out", aFile],
      /BAD_OUTPUT.*--out .*a-file: exists and is not a directory; expected a directory/,
    ],
    [
      "--maps /nonexistent.txt",
      ["--maps", "/nonexistent.txt"],
      /NO_FILE.*--maps \/nonexistent\.txt: cannot read '\/nonexistent\.txt' \(ENOENT\)/,
    ],
    [
      "--trace missing.trace",
      ["--trace", "missing.trace"],
      /TRACE_FILE.*--trace missing\.trace: cannot read it \(ENOENT\); expected a trace_pipe capture/,
    ],
    [
      "--sweep qemu:0",
      ["--sweep", "qemu:0"],
      /BAD_PRESET.*--sweep qemu:0: preset 'qemu:0': size '0' is not a number with K, M, G or T/,
    ],
  ];
  for (const [what, extra, msg] of cli)
    it(`issue 12: ${what} exits 2 with one line naming it, before any run and without writing --out`, () => {
      const out = extra.includes("--out") ? null : outFor(what);
      const r = pagelab("compare", ...(out === null ? [] : ["--out", out]), ...extra);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^pagelab: error \[[A-Z_]+\]: [^\n]+\n$/);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe("");
      if (out !== null) expect(existsSync(out), out).toBe(false);
    });

  // The same checks in this process (no binary start-up per case): the error, and no --out written.
  const inProcess: [string, CompareOptions, string | null, RegExp][] = [
    [
      "--out under a file",
      {},
      join(aFile, "sub"),
      /--out .*a-file\/sub: .*a-file is a file, not a directory/,
    ],
    ["--trace of a directory", { trace: dir }, null, /--trace .*: not a regular file/],
    [
      "--trace without kmem events",
      { trace: noEvents },
      null,
      /empty\.trace: no mm_page_alloc, mm_page_free, kmalloc or kfree event/,
    ],
    [
      "--trace that the named workloads would not replay",
      { workloads: ["page-churn"], trace: "test/fixtures/traces/kmem-sample.trace" },
      null,
      /--trace .*kmem-sample\.trace is replayed only by the ftrace workload/,
    ],
    [
      "--sweep with 6-level paging",
      { sweep: ["qemu:1G", "qemu:1G@6"] },
      null,
      /--sweep qemu:1G@6: preset 'qemu:1G@6': size '1G@6' is not a number/,
    ],
    [
      "--pmm of a missing design file",
      { pmms: ["buddy", "./no-such-design.ts"] },
      null,
      /no-such-design\.ts: no such file/,
    ],
    [
      "--pmm of a design file that does not load",
      { pmms: [broken] },
      null,
      /--pmm: .*broken-design\.ts: could not load the module/,
    ],
    [
      "--pmm of a module that is not a design",
      { pmms: ["./test/fixtures/pmm/not-a-design.ts"] },
      null,
      /--pmm: .*not-a-design\.ts/,
    ],
    [
      "a plan the host budget refuses entirely",
      { pmms: ["freelist"], workloads: ["page-churn"], sweep: [], hostBudget: 128 * 2 ** 20 },
      null,
      /every run would be refused by the host-memory budget: left out of the default: freelist on qemu:4G for page-churn .*would back 0\.2 GiB of host memory .*over the 128 MiB per-run --host-budget/,
    ],
  ];
  for (const [what, o, outDir, msg] of inProcess)
    it(`issue 12: ${what} is refused before any run, without writing --out`, async () => {
      const out = outDir ?? outFor(what);
      const err = await prepareCompare(o, out).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PagelabError);
      expect((err as Error).message).toMatch(msg);
      expect(existsSync(out), out).toBe(false);
    });
});

describe("pagelab compare: a run whose every row failed", () => {
  it("issue 12: exits 1, says every run failed, and still writes results.json and the report", () => {
    const out = join(mkdtempSync(join(tmpdir(), "pagelab-cmp-allfail-")), "out");
    const r = pagelab(
      "compare",
      "--maps",
      "qemu:256M",
      "--pmm",
      "freelist",
      "--kmap",
      "direct,quickmap",
      "--workload",
      "page-churn",
      "--ops",
      "100",
      "--sweep",
      "none",
      "--host-budget",
      "8M",
      "--jobs",
      "0",
      "--out",
      out,
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^2 runs \(2 did not complete: every run failed\)/);
    expect(r.stderr).toMatch(/pagelab: every run failed \(2 of 2\)/);
    const rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    expect(rows.map((x) => x.error?.code)).toEqual(["HOST_MEMORY", "HOST_MEMORY"]);
    expect(readFileSync(join(out, "report.md"), "utf8")).toMatch(/2 of 2 runs ended with HOST_MEMORY/);
  });

  it("issue 12: one failed row among completed ones exits 0 and the first line counts it", () => {
    const out = join(mkdtempSync(join(tmpdir(), "pagelab-cmp-somefail-")), "out");
    const r = pagelab(
      "compare",
      "--maps",
      "qemu:256M",
      "--pmm",
      "freelist,bitmap",
      "--kmap",
      "direct",
      "--workload",
      "page-churn",
      "--ops",
      "100",
      "--sweep",
      "none",
      "--host-budget",
      "8M",
      "--jobs",
      "0",
      "--out",
      out,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^2 runs \(1 did not complete\)/);
  });

  it("--help documents the exit statuses and the up-front checks", () => {
    const r = pagelab("compare", "--help");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Exit status:\n\s+0 +at least one run completed/);
    expect(r.stdout).toMatch(/\n\s+1 +every run failed/);
    expect(r.stdout).toMatch(/\n\s+2 +a usage error/);
    expect(r.stdout).toMatch(/left out before anything starts/);
  });
});
