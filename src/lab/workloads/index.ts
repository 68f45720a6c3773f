/**
 * Every workload by its CLI name (`--workload`). `STANDARD_WORKLOADS` is what `pagelab compare` runs
 * when none is named; `ftrace` joins them when a trace is given.
 */
import { fail } from "../../errors.ts";
import { fileCache } from "./file-cache.ts";
import { forkExit } from "./fork-exit.ts";
import { ftraceReplay } from "./ftrace-replay.ts";
import { heapChurn } from "./heap-churn.ts";
import type { Workload } from "./interface.ts";
import { ipc } from "./ipc.ts";
import { pageChurn } from "./page-churn.ts";

export const WORKLOADS: Record<string, Workload> = {
  "page-churn": pageChurn,
  "heap-churn": heapChurn,
  "file-cache": fileCache,
  ipc,
  "fork-exit": forkExit,
  ftrace: ftraceReplay,
};

export const WORKLOAD_NAMES = Object.keys(WORKLOADS);
export const STANDARD_WORKLOADS = ["page-churn", "heap-churn", "file-cache", "ipc", "fork-exit"];

export function getWorkload(name: string): Workload {
  const w = WORKLOADS[name];
  if (w === undefined)
    fail("UNKNOWN_WORKLOAD", `no workload '${name}' (workloads: ${WORKLOAD_NAMES.join(", ")})`);
  return w;
}

export type { LabKernel, SamplePoint, Workload, WorkloadOptions, WorkloadResult } from "./interface.ts";
