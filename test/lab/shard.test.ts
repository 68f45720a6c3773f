/**
 * Sharded sweeps (issue 15): a small corpus sweep run whole (its own process) and as 3 shards (shard 2
 * in its own process through the CLI, shards 1 and 3 through the same command here), then merged:
 * results.json, report.md, report.html and every figure are the unsharded run's bytes, host time
 * aside. Then the bad inputs: shards of another sweep or version, a missing or doubled shard, a
 * truncated results.json, a bad --shard; merge writes nothing when it refuses.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "@commander-js/extra-typings";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerCompare } from "../../src/cli/commands/compare.ts";
import {
  costEstimate,
  planMatrix,
  prepareCompare,
  type ResultRow,
  type RunSpec,
} from "../../src/lab/compare.ts";
import { rankingFlips } from "../../src/lab/report/corpus.ts";
import { computeFindings, fmt, fmtBytes } from "../../src/lab/report/findings.ts";
import { mergeShards } from "../../src/lab/shard.ts";
import { dealShards, parseShard } from "../../src/lab/shard-plan.ts";
import { pagelab } from "../cli/run.ts";

const ARGS = [
  "compare",
  "--map",
  "corpus:ram<1M,corpus:ram=2040M..2G:origin=mailing-list",
  "--pmm",
  "bitmap,buddy",
  "--kmap",
  "direct,recursive",
  "--workload",
  "page-churn",
  "--ops",
  "200",
  "--sweep",
  "none",
];

/** The CLI's compare command, in this process (its output silenced). */
async function compareHere(args: string[]): Promise<void> {
  const p = new Command().exitOverride();
  registerCompare(p, args);
  const write = process.stdout.write;
  const err = process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await p.parseAsync(["node", "pagelab", ...args]);
  } finally {
    process.stdout.write = write;
    process.stderr.write = err;
  }
}

/** Host time out: each row's hostMs and opsPerHostSecond, the report's wall time. */
function hostless(file: string): string {
  return readFileSync(file, "utf8")
    .replace(/"hostMs":\{"boot":\d+,"workload":\d+\}/g, '"hostMs":{}')
    .replace(/"opsPerHostSecond":\d+/g, '"opsPerHostSecond":0')
    .replace(/in \d+\.\d s with \d+ worker thread\(s\)/g, "in T s with J worker thread(s)");
}

function mergeError(dirs: string[], out: string): { code: string; message: string } {
  return mergeShards(dirs, out).then(
    () => {
      throw new Error("merge should have failed");
    },
    (e: { code: string; message: string }) => e,
  ) as unknown as { code: string; message: string };
}

let root: string;
const dir = (name: string) => join(root, name);
afterAll(() => rmSync(root, { recursive: true, force: true }));

// the sweep, run whole and as 3 shards, once for every test below
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "pagelab-shard-"));
  const whole = pagelab(...ARGS, "--out", dir("whole"));
  expect(whole.status, whole.stderr).toBe(0);
  const s2 = pagelab(...ARGS, "--shard", "2/3", "--out", dir("s2"));
  expect(s2.status, s2.stderr).toBe(0);
  expect(s2.stdout).toMatch(/^shard 2\/3 of a sweep of 24 runs/);
  await compareHere([...ARGS, "--shard", "1/3", "--jobs", "0", "--out", dir("s1")]);
  await compareHere([...ARGS, "--shard", "3/3", "--jobs", "0", "--out", dir("s3")]);
}, 120_000);

describe("compare --shard K/N and compare merge", () => {
  it("the shards split the runs, each once, each with about a third of the estimated work", () => {
    const keys = ["s1", "s2", "s3"].map(
      (s) => JSON.parse(readFileSync(join(dir(s), "manifest.json"), "utf8")).keys as string[],
    );
    const all = keys.flat();
    expect(all.length).toBe(24);
    expect(new Set(all).size).toBe(24);
    for (const k of keys) expect(k.length).toBeGreaterThanOrEqual(6);
    const m = JSON.parse(readFileSync(join(dir("s2"), "manifest.json"), "utf8"));
    expect(m.shard).toEqual({ k: 2, n: 3 });
    expect(m.sweep.runs.length).toBe(24);
    expect(m.sweep.seed).toBe(1);
    expect(m.sweep.command).toBe(`pagelab ${ARGS.join(" ")}`);
    expect(m.sweep.pagelabVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("merged, the files are the unsharded run's, byte for byte but for host time", async () => {
    const res = await mergeShards([dir("s3"), dir("s1"), dir("s2")], dir("merged"));
    expect(res.rows.length).toBe(24);
    expect(res.rows.filter((r) => r.error !== null).length).toBe(4); // the 572 KiB machine
    const files = readdirSync(dir("whole")).sort();
    expect(files).toContain("report.md");
    expect(files.filter((f) => f.endsWith(".svg")).length).toBeGreaterThan(2);
    expect(readdirSync(dir("merged")).sort()).toEqual(files);
    for (const f of files) expect(hostless(join(dir("merged"), f)), f).toBe(hostless(join(dir("whole"), f)));
    // and the host time really is the only difference
    expect(readFileSync(join(dir("merged"), "results.json"), "utf8")).not.toBe("");
    expect(readdirSync(root).filter((f) => f.includes(".merge-"))).toEqual([]);
  });

  it("merge through the CLI: --out is merge's own, and the summary names the shards", () => {
    const r = pagelab("compare", "merge", dir("s1"), dir("s2"), dir("s3"), "--out", dir("cli"), "--json");
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.runs).toBe(24);
    expect(j.errors).toBe(4);
    expect(j.shards.map((s: { k: number }) => s.k)).toEqual([1, 2, 3]);
    expect(hostless(join(dir("cli"), "report.md"))).toBe(hostless(join(dir("whole"), "report.md")));
  });

  it("refuses a missing shard, a doubled one, and shards of another sweep or version, naming them", async () => {
    const out = dir("bad");
    let e = await mergeError([dir("s1"), dir("s3")], out);
    expect(e.code).toBe("SHARD_MISSING");
    expect(e.message).toMatch(/shard 2\/3 is missing \(given: 1\/3 in .*s1, 3\/3 in .*s3\)/);
    cpSync(dir("s2"), dir("s2-copy"), { recursive: true });
    e = await mergeError([dir("s1"), dir("s2"), dir("s2-copy"), dir("s3")], out);
    expect(e.code).toBe("SHARD_DUPLICATE");
    expect(e.message).toMatch(/shard 2\/3 is given twice: .*s2 and .*s2-copy/);
    const other = (name: string, edit: (m: { sweep: Record<string, unknown> }) => void) => {
      cpSync(dir("s2"), dir(name), { recursive: true });
      const f = join(dir(name), "manifest.json");
      const m = JSON.parse(readFileSync(f, "utf8"));
      edit(m);
      writeFileSync(f, JSON.stringify(m));
    };
    other("s2-seed", (m) => {
      m.sweep.seed = 7;
    });
    e = await mergeError([dir("s1"), dir("s2-seed"), dir("s3")], out);
    expect(e.code).toBe("SHARD_MISMATCH");
    expect(e.message).toMatch(
      /s2-seed\/manifest.json is from another sweep than .*s1\/manifest.json: seed 7, not 1/,
    );
    other("s2-version", (m) => {
      m.sweep.pagelabVersion = "0.0.1";
    });
    e = await mergeError([dir("s1"), dir("s2-version"), dir("s3")], out);
    expect(e.message).toMatch(/pagelab version 0\.0\.1, not \d/);
    other("s2-options", (m) => {
      (m.sweep.options as Record<string, unknown>).pmms = ["buddy"];
    });
    e = await mergeError([dir("s1"), dir("s2-options"), dir("s3")], out);
    expect(e.message).toMatch(/option pmms \["buddy"\], not \["bitmap","buddy"\]/);
    expect(existsSync(out)).toBe(false);
  });

  it("refuses a truncated or missing results.json and a shard without a manifest, writing nothing", async () => {
    const out = dir("bad2");
    cpSync(dir("s2"), dir("s2-cut"), { recursive: true });
    const f = join(dir("s2-cut"), "results.json");
    const text = readFileSync(f, "utf8");
    writeFileSync(f, text.slice(0, Math.floor(text.length / 2)));
    let e = await mergeError([dir("s1"), dir("s2-cut"), dir("s3")], out);
    expect(e.code).toBe("BAD_SHARD");
    expect(e.message).toMatch(
      /s2-cut\/results\.json: truncated or not JSON.*expected the JSON array of \d+ rows shard 2\/3 wrote/,
    );
    // a row missing: valid JSON, incomplete
    const rows = JSON.parse(text);
    writeFileSync(f, JSON.stringify(rows.slice(1)));
    e = await mergeError([dir("s1"), dir("s2-cut"), dir("s3")], out);
    expect(e.message).toMatch(/s2-cut\/results\.json: \d+ rows; expected the JSON array of \d+ rows/);
    cpSync(dir("s3"), dir("s3-unfinished"), { recursive: true });
    writeFileSync(join(dir("s3-unfinished"), "manifest.json"), "");
    e = await mergeError([dir("s1"), dir("s2"), dir("s3-unfinished")], out);
    expect(e.message).toMatch(/s3-unfinished\/manifest.json: empty; expected the manifest.json a finished/);
    expect(existsSync(out)).toBe(false);
    // an existing --out is left as it was
    e = await mergeError([dir("s1"), dir("s2-cut"), dir("s3")], dir("whole"));
    expect(hostless(join(dir("whole"), "report.md"))).toBe(hostless(join(dir("merged"), "report.md")));
  });

  it("--shard 0/3, 4/3 and x/y are usage errors: one line, exit 2, nothing run", () => {
    for (const [s, why] of [
      ["0/3", /K must be 1\.\.3/],
      ["4/3", /K must be 1\.\.3/],
      ["x/y", /expected K\/N/],
    ] as const) {
      const r = pagelab(...ARGS, "--shard", s, "--out", dir(`never-${s.replace("/", "-")}`));
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(why);
      expect(r.stderr).toContain(`--shard ${s}`);
    }
    expect(readdirSync(root).filter((f) => f.startsWith("never"))).toEqual([]);
  });
});

describe("the report of a sweep over several machines (the corpus report)", () => {
  const rowsOf = (d: string) => JSON.parse(readFileSync(join(d, "results.json"), "utf8")) as ResultRow[];

  it("has the corpus figures, tables and findings, with the rows' numbers", () => {
    const files = readdirSync(dir("whole"));
    for (const f of ["corpus-metadata-share", "corpus-page-tables", "corpus-refusals"])
      expect(files).toContain(`fig-${f}.svg`);
    const rows = rowsOf(dir("whole"));
    const md = readFileSync(join(dir("whole"), "report.md"), "utf8");
    const booted = rows.filter((r) => r.error === null);
    const machines = new Set(booted.map((r) => r.map)).size;
    expect(machines).toBe(5);
    for (const pmm of ["bitmap", "buddy"]) {
      const pct = booted.filter((r) => r.pmm === pmm).map((r) => (100 * r.metadataBytes) / r.ramBytes);
      const lo = fmt(Math.min(...pct));
      const hi = fmt(Math.max(...pct));
      expect(md).toContain(`${lo === hi ? lo : `${lo} to ${hi}`} % with ${pmm}`);
    }
    expect(md).toMatch(
      /Across 5 machines \([\d.]+ GiB to [\d.]+ GiB of usable RAM\), PMM metadata after boot/,
    );
    expect(md).toMatch(
      /NO_ROOM_FOR_KERNEL refused the boot of 1 of 6 machines \(bitmap on 1 and buddy on 1\): corpus:ml-linux-tip-commits-c649691b0a-0/,
    );
    expect(md).toMatch(
      /On page-churn \(direct mapping, 4 CPUs\), the designs rank .*(bitmap < buddy|buddy < bitmap)/,
    );
    const table = md.split("### Page tables by machine (buddy PMM)")[1].split("\n\n")[1].split("\n");
    expect(table.length).toBe(2 + 5);
    const r0 = booted.find((r) => r.pmm === "buddy" && r.kmap === "recursive")!;
    expect(table.find((l) => l.startsWith(`| ${r0.map} |`))).toMatch(
      new RegExp(`\\| ${fmtBytes(r0.pageTableBytes).replace(".", "\\.")} \\|$`),
    );
  });

  it("names the machines where the ranking flips, and says nothing of the kind for one machine", () => {
    const rows = rowsOf(dir("whole"));
    const direct = rows.filter((r) => r.kmap === "direct" && r.error === null);
    const maps = [...new Set(direct.map((r) => r.map))];
    // make bitmap the costlier design everywhere but on one machine
    const flipped = maps[3];
    const edited = rows.map((r) => {
      if (r.perOp === null) return r;
      const high = (r.pmm === "bitmap") !== (r.map === flipped);
      return { ...r, perOp: { ...r.perOp, memRefs: high ? 50 : 10 } };
    });
    const g = rankingFlips(edited).find((x) => x.kmap === "direct")!;
    expect(g.usual).toEqual(["buddy", "bitmap"]);
    expect(g.machines).toBe(5);
    expect(g.flips.map((f) => f.map)).toEqual([flipped]);
    const text = computeFindings(edited).find((f) => f.topic === "corpus: ranking")!.text;
    expect(text).toContain(`on 4 of 5 machines; the ranking flips on ${flipped}`);
    expect(text).toContain(": bitmap < buddy.");
    // a machine where one design did not run is no flip (the others keep their usual order)
    const third = edited
      .filter((r) => r.pmm === "buddy" && r.perOp !== null)
      .map((r) => ({ ...r, pmm: "x", perOp: { ...r.perOp!, memRefs: 5 } }));
    const partial = [...edited, ...third].filter((r) => !(r.map === maps[1] && r.pmm === "bitmap"));
    expect(rankingFlips(partial).find((x) => x.kmap === "direct")!.usual).toEqual(["x", "buddy", "bitmap"]);
    expect(
      rankingFlips(partial)
        .find((x) => x.kmap === "direct")!
        .flips.map((f) => f.map),
    ).toEqual([flipped]);
    const one = rows.filter((r) => r.map === maps[0]);
    expect(computeFindings(one).filter((f) => f.topic.startsWith("corpus"))).toEqual([]);
  });
});

describe("compare over many corpus machines", () => {
  it("says which default runs it leaves out in a sentence that names a few machines, and deals refused runs as free", async () => {
    const plan = await prepareCompare(
      { maps: ["corpus:ram>=64G"], pmms: undefined, kmaps: ["direct"], workloads: ["page-churn"], sweep: [] },
      join(tmpdir(), "pagelab-never-written"),
    );
    const free = plan.leftOut.find((l) => l.pmms.includes("freelist"))!;
    expect(free.maps.length).toBeGreaterThan(8);
    expect(free.text).toMatch(
      new RegExp(
        `freelist on ${free.maps.length} maps \\(corpus:[^,]+, corpus:[^,]+, corpus:[^,]+, \\.\\.\\.\\)`,
      ),
    );
    expect(free.text.length).toBeLessThan(600);
    // named designs: the budget's refusals stay in the plan as rows, and cost almost nothing in the deal
    const named = await prepareCompare(
      {
        maps: ["corpus:ram>=1T"],
        pmms: ["stack-pages", "bitmap"],
        kmaps: ["direct"],
        workloads: ["page-churn"],
        sweep: [],
      },
      join(tmpdir(), "pagelab-never-written"),
    );
    const [stack, bitmap] = named.specs;
    expect(stack.pmm).toBe("stack-pages");
    expect(costEstimate(stack)).toBeGreaterThan(100);
    expect(named.cost(stack)).toBe(0.01);
    expect(named.cost(bitmap)).toBe(costEstimate(bitmap));
  });
});

describe("the deal", () => {
  it("balances the estimated cost, not the count, and depends only on the plan", () => {
    const plan = planMatrix({
      maps: ["qemu:1G", "qemu:16G", "qemu:64G"],
      pmms: ["bitmap"],
      kmaps: ["direct"],
      workloads: ["page-churn"],
      sweep: [],
    });
    const cost = (s: RunSpec) => [1, 16, 64][["qemu:1G", "qemu:16G", "qemu:64G"].indexOf(s.map)];
    expect(dealShards(plan, 2, cost)).toEqual([1, 1, 0]); // 64 alone; 16 + 1 together
    expect(dealShards(plan, 2, cost)).toEqual(dealShards(plan, 2, cost));
    expect(dealShards(plan, 5, cost).filter((x) => x >= 3)).toEqual([]); // 3 runs: shards 4, 5 empty
    expect(parseShard("2/4")).toEqual({ k: 2, n: 4 });
  });
});
