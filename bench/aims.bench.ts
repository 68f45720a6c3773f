/**
 * `npm run bench -- aims`: the figures a user meets, each a whole `pagelab` process as a user runs it
 * (start-up included, after-boot checks on), with its host wall time and peak RSS beside the aim. The
 * PMM-versus-C row comes from the PMM benchmark when it ran earlier in the same run (`npm run bench`
 * runs this file last), else it is measured here. The load average is printed first and last: these
 * machines are shared, so ratios within one run are the reliable figures. Each command runs
 * AIMS_REPEAT times (default 3, one after another): the median wall time is the figure, the range
 * beside it shows how much this machine moved meanwhile.
 */
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { lastFigures, measureTwinFigures } from "./pmm.bench.ts";

const ONE = fileURLToPath(new URL("./cli-one.mjs", import.meta.url));

interface Row {
  what: string;
  args: string[];
  aim: string;
}

const ROWS: Row[] = [
  {
    what: "boot --map qemu:1T --pmm bitmap",
    args: ["boot", "--map", "qemu:1T", "--pmm", "bitmap"],
    aim: "<= 1 s",
  },
  {
    what: "boot --map qemu:1T --pmm buddy",
    args: ["boot", "--map", "qemu:1T", "--pmm", "buddy"],
    aim: "<= 3 s, <= 1.5 GB",
  },
  {
    what: "boot --map qemu:1T --pmm stack",
    args: ["boot", "--map", "qemu:1T", "--pmm", "stack"],
    aim: "<= 10 s",
  },
  {
    what: "boot --map qemu:1T --pmm stack-pages",
    args: ["boot", "--map", "qemu:1T", "--pmm", "stack-pages"],
    aim: "<= 10 s",
  },
  {
    what: "boot --map qemu:64T --pmm bitmap",
    args: ["boot", "--map", "qemu:64T", "--pmm", "bitmap"],
    aim: "<= 10 s, <= 3 GB",
  },
  {
    what: "boot --map sparse --levels 5 --pmm bitmap",
    args: ["boot", "--map", "sparse", "--levels", "5", "--pmm", "bitmap"],
    aim: "<= 1 s",
  },
  { what: "pagelab --help", args: ["--help"], aim: "<= 0.25 s" },
  { what: "boot (default, qemu:4G)", args: ["boot"], aim: "<= 0.6 s" },
  {
    what: "compare (default)",
    args: ["compare", "--out", "/tmp/pagelab-aims-compare", "--json"],
    aim: "<= 15 s, <= 1 GB",
  },
];

function run(args: string[]): { ms: number; rssMiB: number; status: number; err: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [ONE, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
  const ms = performance.now() - t0;
  // A big boot relaunches itself once with huge pages (src/cli/huge-pages.ts): each process prints
  // its own peak; the command's is the larger.
  const peaks = [...r.stderr.matchAll(/pagelab-bench maxRSS (\d+)/g)].map((m) => Number(m[1]));
  const err = r.stderr.replace(/\n?pagelab-bench maxRSS \d+\n?/g, "").trim();
  const rssMiB = peaks.length > 0 ? Math.max(...peaks) / 1024 : Number.NaN;
  return { ms, rssMiB, status: r.status ?? -1, err };
}

/** The PMM-versus-C row: from the PMM benchmark when it ran earlier in this process, else measured now. */
async function pmmRow(): Promise<void> {
  const f = lastFigures ?? (await measureTwinFigures());
  const x = (r: number) => (Number.isNaN(r) ? "n/a (no cc)" : `${r.toFixed(1)}x`);
  console.log(
    `${"PMM order-0 alloc+free vs C, same trace".padEnd(44)} stack ${x(f.stack)}, stack-pages ${x(f.stackPages)}, freelist ${x(f.freelist)}, buddy ${x(f.buddy)} (mixed ${x(f.buddyMixed)}), bitmap pair ${f.bitmapPairNs.toFixed(0)} ns  aim: stacks, freelist <= 2x; buddy <= 3x; bitmap pair <= 150 ns`,
  );
}

export default async function aims(): Promise<void> {
  const only = process.env.AIMS?.split(",");
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} (1, 5, 15 min)`,
  );
  const repeat = Math.max(1, Number(process.env.AIMS_REPEAT ?? 3) || 1);
  console.log(
    `${"command (checks on)".padEnd(44)} ${"wall s".padStart(8)} ${`(${repeat} runs: min-max)`.padStart(18)} ${"peak RSS".padStart(10)}  aim`,
  );
  for (const row of ROWS) {
    if (only && !only.some((o) => row.what.includes(o))) continue;
    const rs = Array.from({ length: repeat }, () => run(row.args));
    const bad = rs.find((r) => r.status !== 0);
    const fail = bad === undefined ? "" : `  exit ${bad.status}: ${bad.err.split("\n")[0].slice(0, 100)}`;
    const ms = rs.map((r) => r.ms).sort((a, b) => a - b);
    const median = ms[(ms.length - 1) >> 1];
    const range = `${(ms[0] / 1000).toFixed(2)}-${(ms[ms.length - 1] / 1000).toFixed(2)}`;
    const rss = Math.max(...rs.map((r) => r.rssMiB));
    console.log(
      `${row.what.padEnd(44)} ${(median / 1000).toFixed(2).padStart(8)} ${range.padStart(18)} ${`${(rss / 1024).toFixed(2)} GB`.padStart(10)}  ${row.aim}${fail}`,
    );
  }
  if (!only || only.some((o) => "pmm".includes(o))) await pmmRow();
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} after`,
  );
}
