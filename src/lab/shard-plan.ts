/**
 * How a sweep is split into shards (`pagelab compare --shard K/N`): the plan's runs are dealt, longest
 * first by compare's cost estimate, each to the shard with the least estimated work so far (ties: the
 * lowest shard, then plan order). A run the host-memory budget refuses counts as almost free
 * (prepareCompare's `cost`): on the corpus sweep of the README the shards' host time then spreads
 * within 10 % of the mean (4 shards), where the plain estimate gave 36 %. The deal depends only on the plan, so N processes on N machines
 * that run the same command with K = 1..N together run every run exactly once.
 */
import { fail } from "../errors.ts";
import type { RunSpec } from "./compare.ts";

export interface Shard {
  /** 1-based. */
  k: number;
  n: number;
}

export const MAX_SHARDS = 10000;

/** `K/N` with 1 <= K <= N; anything else is a usage error (one line, exit 2). */
export function parseShard(text: string): Shard {
  const m = /^(\d{1,5})\/(\d{1,5})$/.exec(text.trim());
  if (m === null)
    fail("BAD_OPTION", `--shard ${text}: expected K/N, the K-th of N shards (e.g. --shard 1/4)`);
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || n > MAX_SHARDS) fail("BAD_OPTION", `--shard ${text}: N must be 1..${MAX_SHARDS} (got ${n})`);
  if (k < 1 || k > n)
    fail("BAD_OPTION", `--shard ${text}: K must be 1..${n}, the shard's number among ${n} (got ${k})`);
  return { k, n };
}

/** Which shard (0-based) each run of the plan belongs to, by position in the plan. */
export function dealShards(plan: RunSpec[], n: number, cost: (s: RunSpec) => number): number[] {
  const c = plan.map(cost);
  const order = plan.map((_, i) => i).sort((a, b) => c[b] - c[a] || a - b);
  const load = new Array<number>(n).fill(0);
  const out = new Array<number>(plan.length).fill(0);
  for (const i of order) {
    let best = 0;
    for (let j = 1; j < n; j++) if (load[j] < load[best]) best = j;
    out[i] = best;
    load[best] += c[i];
  }
  return out;
}

/** The runs of shard K of N, in plan order. */
export function shardSpecs(plan: RunSpec[], shard: Shard, cost: (s: RunSpec) => number): RunSpec[] {
  const deal = dealShards(plan, shard.n, cost);
  return plan.filter((_, i) => deal[i] === shard.k - 1);
}

/** A run's name in a manifest: its place in the plan and what it runs. */
export function runKey(
  s: Pick<RunSpec, "index" | "kind" | "map" | "levels" | "pmm" | "kmap" | "workload" | "cpus">,
): string {
  return [s.index, s.kind, `${s.map}@${s.levels}`, s.pmm, s.kmap, s.workload ?? "-", s.cpus].join("|");
}
