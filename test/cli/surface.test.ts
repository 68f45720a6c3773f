/**
 * The command line's surface: every run exits 0 or 2 (audit 1 only for a W+X / user-accessible
 * kernel mapping), a status 2 comes with exactly one line on stderr, never a stack trace, and no run
 * outlives its time bound. A fixed-seed fast-check fuzz over each command's flags and values (real
 * processes), plus one regression test per symptom reported against the CLI.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../../bin/pagelab.mjs", import.meta.url));
const TIME_BOUND_MS = 60_000;

interface Run {
  args: string[];
  status: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function run(args: string[], env: Record<string, string> = { NO_COLOR: "1" }): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: TIME_BOUND_MS,
  });
  return {
    args,
    status: r.status ?? -1,
    stdout: r.stdout ?? "",
    stderr: r.stderr ?? "",
    timedOut: r.signal !== null,
  };
}

/** The contract every run keeps; returns a description of the breach, or null. */
function breach(r: Run): string | null {
  const cmd = `pagelab ${r.args.join(" ")}`;
  if (r.timedOut) return `${cmd}: still running after ${TIME_BOUND_MS} ms`;
  if (/\n\s+at .+[(:]\d+/.test(r.stderr)) return `${cmd}: stack trace on stderr: ${r.stderr}`;
  const audit1 = r.args[0] === "audit" && r.status === 1 && /FAILED|"ok": false/.test(r.stdout);
  if (r.status !== 0 && r.status !== 2 && !audit1) return `${cmd}: exit ${r.status}: ${r.stderr}`;
  if (r.status === 2) {
    const lines = r.stderr.trimEnd().split("\n");
    if (lines.length !== 1 || !lines[0].startsWith("pagelab: "))
      return `${cmd}: exit 2 without one 'pagelab: ' line on stderr: ${JSON.stringify(r.stderr)}`;
  }
  return null;
}

const out = mkdtempSync(join(tmpdir(), "pagelab-cli-"));

// Per command: the fixed arguments that keep a run small, and the flags with values to draw from
// (valid, out of range, malformed, and contradictory combinations).
const ANY = [
  "0",
  "1",
  "-1",
  "2",
  "5",
  "256",
  "257",
  "100000",
  "1e3",
  "0x10",
  "",
  "x",
  "1.5",
  "4G",
  "0x2000000",
];
const COMMANDS: Record<string, { base: string[]; flags: [string, string[] | null][] }> = {
  boot: {
    base: ["boot", "--mem", "256M", "--json"],
    flags: [
      ["--kmap", ["direct", "recursive", "quickmap", "hybrid", "pool", "foo"]],
      ["--pmm", ["buddy", "bitmap", "nope"]],
      ["--levels", ["4", "5", "3", "x"]],
      ["--cpus", ANY],
      ["--seed", ANY],
      ["--kernel-phys", ["0x2000000", "0x1000", "0x3d400000", "x", "0x10000000000000"]],
      ["--kaslr", null],
      ["--bottom-up", null],
      ["--early", ["memblock", "placement", "bump"]],
      ["--recursive-slot", ["510", "0", "511", "512", "273"]],
      ["--direct-base", ["0xffff888000000000", "0x1000", "0xffffffff80000000", "x"]],
      ["--hybrid-limit", ["1G", "0", "3M", "x"]],
      ["--map-holes", null],
      ["--exec-direct-map", null],
      ["--no-gbpages", null],
      ["--mem", ["0", "64M", "x", "1T"]],
      ["--host-budget", ["1", "1M", "8G", "x"]],
      ["--bogus", null],
    ],
  },
  audit: {
    base: ["audit", "--mem", "256M"],
    flags: [
      ["--kmap", ["direct", "quickmap", "foo"]],
      ["--exec-direct-map", null],
      ["--map-holes", null],
      ["--cpus", ANY],
      ["--json", null],
    ],
  },
  pmm: {
    base: ["pmm", "--design", "bitmap", "--mem", "64M"],
    flags: [
      ["--design", ["bitmap", "nope", "all"]],
      ["--cpus", ANY],
      ["--colours", ANY],
      ["--seed", ANY],
      ["--mem", ["0", "16M", "x", "64M"]],
      ["--json", null],
    ],
  },
  "pt translate": {
    base: ["pt", "translate"],
    flags: [
      ["", ["0xffff888040001234", "0x0000800000000000", "x", "0xffffffff80000000"]],
      ["--access", ["read", "write", "fetch", "poke"]],
      ["--levels", ["4", "5", "6"]],
      ["--user", null],
      ["--json", null],
    ],
  },
  "pt dump": {
    base: ["pt", "dump", "--format", "mem"],
    flags: [
      ["--format", ["ptdump", "tlb", "mem", "pdf"]],
      ["--levels", ["4", "5", "x"]],
      ["--map", ["qemu:64M", "nope:1"]],
    ],
  },
  demo: {
    base: ["demo", "--json"],
    flags: [
      ["--map", ["qemu:64M", "sparse", "qemu:1", "/nonexistent"]],
      ["--levels", ["4", "5", "0"]],
    ],
  },
  map: {
    base: ["map", "qemu:64M"],
    flags: [
      ["", ["qemu:64M", "sparse", "/nonexistent", "numa:2x8G", "qemu:x"]],
      ["--json", null],
      ["--memblock", null],
      ["--format", ["json", "nope"]],
    ],
  },
  "map convert": {
    base: ["map", "convert", "qemu:64M"],
    flags: [
      ["--to", ["uefi", "multiboot2", "json", "nope"]],
      ["--out", [join(out, "m.bin"), "/nonexistent/dir/x.bin", out, "/proc/self/nope"]],
    ],
  },
  compare: {
    base: [
      "compare",
      "--maps",
      "qemu:64M",
      "--pmm",
      "bitmap",
      "--kmap",
      "direct",
      "--sweep",
      "none",
      "--jobs",
      "0",
      "--out",
      join(out, "cmp"),
    ],
    flags: [
      ["--workload", ["none", "page-churn", "nope"]],
      ["--ops", ["10", "0", "x"]],
      ["--cpus", ["1", "0", "65"]],
      ["--seed", ANY],
      ["--out", [join(out, "cmp")]],
    ],
  },
  serve: { base: ["serve", "--help"], flags: [["--port", ["0", "65536", "x"]]] },
};

function argsFor(name: string) {
  const c = COMMANDS[name];
  return fc
    .subarray(c.flags, { maxLength: Math.min(3, c.flags.length) })
    .chain((flags) =>
      fc.tuple(
        ...flags.map(([f, vals]) =>
          vals === null ? fc.constant([f]) : fc.constantFrom(...vals).map((v) => (f === "" ? [v] : [f, v])),
        ),
      ),
    )
    .map((parts) => [...c.base, ...parts.flat()]);
}

/** Runs per command: few where a run boots, more where most runs fail in validation. */
const RUNS: Record<string, number> = {
  boot: 6,
  audit: 4,
  pmm: 4,
  "pt translate": 4,
  "pt dump": 3,
  demo: 3,
  map: 4,
  "map convert": 4,
  compare: 3,
  serve: 2,
};

describe("pagelab CLI surface", () => {
  it("fuzz: every command's flags and values exit 0 or 2 with one line, no stack trace, no hang", () => {
    const seen: Record<string, Record<number, number>> = {};
    for (const [name, n] of Object.entries(RUNS)) {
      const sample = fc.sample(argsFor(name), { seed: 20261205, numRuns: n });
      // Always include the command with only its base arguments.
      for (const args of [COMMANDS[name].base, ...sample.slice(1)]) {
        const r = run(args);
        const b = breach(r);
        expect(b, b ?? "").toBeNull();
        seen[name] ??= {};
        seen[name][r.status] = (seen[name][r.status] ?? 0) + 1;
      }
    }
    console.log(`CLI fuzz exit statuses per command: ${JSON.stringify(seen)}`);
    // The fuzz reaches both sides of the contract.
    const all = Object.values(seen).flatMap((s) => Object.keys(s).map(Number));
    expect(all).toContain(0);
    expect(all).toContain(2);
  }, 600_000);

  it("#3: pmm --cpus 0 and --cpus 100000 are refused at once (exit 2), not a 220 s run ending in DOUBLE_FREE", () => {
    for (const v of ["0", "100000"]) {
      const r = run(["pmm", "--cpus", v]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/BAD_OPTION.*--cpus must be an integer from 1 to 256/);
    }
  });

  it("#6: contradictory or ignored boot flags are refused with the reason (kaslr+kernel-phys, map-holes/exec-direct-map with quickmap, hybrid-limit with direct, placement+bottom-up)", () => {
    const cases: [string[], RegExp][] = [
      [["--kaslr", "--kernel-phys", "0x2000000"], /--kaslr .*--kernel-phys/],
      [["--kmap", "quickmap", "--map-holes"], /--map-holes .*--kmap quickmap builds none/],
      [["--kmap", "direct", "--hybrid-limit", "1G"], /--hybrid-limit .*--kmap direct/],
      [["--kmap", "quickmap", "--exec-direct-map"], /--exec-direct-map .*quickmap/],
      [["--early", "placement", "--bottom-up"], /--bottom-up .*placement/],
    ];
    for (const [args, why] of cases) {
      const r = run(["boot", "--mem", "256M", ...args]);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/BAD_OPTION_COMBINATION/);
      expect(r.stderr).toMatch(why);
    }
  });

  it("#6: --kaslr alone says in the boot log which slot it chose", () => {
    const j = JSON.parse(run(["boot", "--mem", "256M", "--kaslr", "--seed", "3", "--json"]).stdout);
    expect(j.bootSteps[1].log.join("\n")).toMatch(/KASLR \(seed 3\): slot \d+ of \d+/);
  });

  it("#12: usage errors (--kmap foo, an unknown option) exit 2 with one line; --out into a missing directory names the path, no stack", () => {
    for (const args of [
      ["boot", "--kmap", "foo"],
      ["boot", "--bogus"],
    ]) {
      const r = run(args);
      expect(r.status).toBe(2);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    }
    const r = run(["map", "convert", "qemu:64M", "--to", "uefi", "--out", "/nonexistent/dir/x.bin"]);
    expect(r.status).toBe(2);
    expect(r.stderr.trimEnd()).toBe(
      "pagelab: error [ENOENT]: cannot open '/nonexistent/dir/x.bin': no such file or directory",
    );
    const d = run(["map", "convert", "qemu:64M", "--to", "uefi", "--out", out]);
    expect(d.status).toBe(2);
    expect(d.stderr).toMatch(/EISDIR/);
  });

  it("#12: audit exits 1 only for a W+X finding, 0 for a clean boot", () => {
    expect(run(["audit", "--mem", "256M"]).status).toBe(0);
    expect(run(["audit", "--mem", "256M", "--exec-direct-map"]).status).toBe(1);
  });

  it("#13: demo --map sparse works (RAM beyond a 4-level direct map left out, said so) instead of PA_OUT_OF_RANGE", () => {
    const r = run(["demo", "--map", "sparse", "--json"]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).steps[0].detail.join("\n")).toMatch(
      /4-level direct map holds .* RAM above it are ignored/,
    );
  });

  it("#13: boot's step counters sum to the summary's, and the fixmap line counts remaps, not tables", () => {
    const j = JSON.parse(run(["boot", "--mem", "256M", "--json"]).stdout);
    for (const k of ["memReads", "memWrites", "walks"]) {
      const sum = j.bootSteps.reduce(
        (s: number, st: { counters: Record<string, number> }) => s + (st.counters[k] ?? 0),
        0,
      );
      expect(sum, k).toBe(j.counters[k]);
    }
    const log = j.bootSteps.map((s: { log: string[] }) => s.log.join("\n")).join("\n");
    expect(log).toMatch(/fixmap-window remaps to write tables/);
    expect(log).not.toMatch(/tables written through the fixmap window/);
  });

  it("#13: pt translate's help gives an example that is a 1 GiB page, and no colour codes reach a pipe", () => {
    const h = run(["pt", "translate", "--help"]).stdout;
    const ex = /pagelab pt translate (0x[0-9a-f]+) +# direct map, PA 0x[0-9a-f]+: a 1 GiB page/.exec(h);
    expect(ex).not.toBeNull();
    expect(JSON.parse(run(["pt", "translate", ex![1], "--json"]).stdout).pageSize).toBe("1G");
    const p = run(["pmm", "--design", "bitmap", "--mem", "64M"], {});
    expect(p.status).toBe(0);
    expect(p.stdout).not.toContain("\u001b[");
  });
});
