/**
 * Host memory in 2 MiB pages for a big simulation. A boot that backs gigabytes of simulated RAM (a
 * 1 TiB free-page stack writes 2 GiB of frame numbers) spends much of its host time in the host
 * kernel's page faults, one per 4 KiB page first written: measured here, 2 GiB took 6.8 s in 4 KiB
 * pages and 1.5 s in 2 MiB ones. Node cannot ask for huge pages itself (no madvise), but glibc can:
 * with the tunable `glibc.malloc.hugetlb=1` (glibc 2.35+) it marks its large allocations, the RAM
 * model's slabs among them, MADV_HUGEPAGE, which transparent huge pages honour in their default
 * `madvise` mode. Tunables are read when the process starts, so the CLI relaunches itself once, with
 * the tunable set and the same arguments and standard streams, when a boot's host estimate is big.
 * Counters and output are unchanged; only host time and page-table overhead differ.
 *
 * Not relaunched: off Linux, when THP is `never` (nothing to gain) or `always` (already huge), when
 * the tunable is already set or this is the relaunched process, when an argument is `-` (standard
 * input was read already), in a worker thread, and with PAGELAB_HUGE_PAGES=0.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { isMainThread } from "node:worker_threads";

/** Host estimates from this size up are worth the relaunch (about 0.1 s of node start-up). */
export const HUGE_PAGES_FROM = 256 * 2 ** 20;
const TUNABLE = "glibc.malloc.hugetlb=1";

/** Why the CLI would not relaunch itself now, or null when it would (exported for tests). */
export function noRelaunchReason(env: NodeJS.ProcessEnv = process.env, argv = process.argv): string | null {
  if (process.platform !== "linux") return "not Linux";
  if (!isMainThread) return "a worker thread";
  if (env.PAGELAB_HUGE_PAGES === "0") return "PAGELAB_HUGE_PAGES=0";
  if (env.PAGELAB_RELAUNCHED === "1") return "already relaunched";
  if ((env.GLIBC_TUNABLES ?? "").includes("glibc.malloc.hugetlb")) return "GLIBC_TUNABLES already sets it";
  if (argv.slice(2).includes("-")) return "standard input was read";
  let thp: string;
  try {
    thp = readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8");
  } catch {
    return "no transparent huge pages";
  }
  if (!thp.includes("[madvise]")) return `transparent huge pages are ${thp.trim()}`;
  return null;
}

/**
 * When `hostBytes` is big and a relaunch can help, run this command again in a child process with
 * huge pages and exit with its status; otherwise return and let the caller go on.
 */
export function relaunchWithHugePages(hostBytes: number): void {
  if (hostBytes < HUGE_PAGES_FROM || noRelaunchReason() !== null) return;
  const tunables = process.env.GLIBC_TUNABLES ? `${process.env.GLIBC_TUNABLES}:${TUNABLE}` : TUNABLE;
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, GLIBC_TUNABLES: tunables, PAGELAB_RELAUNCHED: "1" },
  });
  if (r.error !== undefined) return; // could not start: go on here, in 4 KiB pages
  if (r.signal !== null) process.kill(process.pid, r.signal);
  process.exit(r.status ?? 1);
}
