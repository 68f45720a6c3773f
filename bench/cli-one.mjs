// Runs the pagelab CLI in this process (argv after this file's name) and, as it exits, writes its peak
// resident set size to stderr as `pagelab-bench maxRSS <KiB>`: bench/aims.bench.ts measures whole
// commands, start-up included, the way a user runs them.
import { writeSync } from "node:fs";

process.on("exit", () => {
  writeSync(2, `\npagelab-bench maxRSS ${process.resourceUsage().maxRSS}\n`);
});
await import("../bin/pagelab.mjs");
