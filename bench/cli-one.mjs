// Runs the pagelab CLI in this process (argv after this file's name) and, as it exits, writes its peak
// resident set size to stderr as `pagelab-bench maxRSS <KiB>`: bench/aims.bench.ts measures whole
// commands, start-up included, the way a user runs them. On Linux the peak is VmHWM of
// /proc/self/status, this process's own: getrusage's maxrss would also hold the RSS of the benchmark
// process this one was forked from (Linux keeps the larger across exec), so every small command
// would show the benchmark's size.
import { readFileSync, writeSync } from "node:fs";

function peakKiB() {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]);
  } catch {}
  return process.resourceUsage().maxRSS;
}

process.on("exit", () => {
  writeSync(2, `\npagelab-bench maxRSS ${peakKiB()}\n`);
});
await import("../bin/pagelab.mjs");
