/**
 * Host memory a boot will back, estimated before any work, and the refusal when it exceeds the
 * budget: the design's standing metadata plus what it says it writes into free frames
 * (`PmmDesign.hostBytes`). Every command that brings a PMM up goes through here.
 */
import { fail } from "../../errors.ts";
import { framesIn } from "../../firmware/frames.ts";
import type { HostBytes, PmmDesign, PmmLayout } from "../pmm/interface.ts";

/** Default host budget of a boot (`--host-budget`). */
export const DEFAULT_BOOT_HOST_BUDGET = 8 * 2 ** 30;

/** Host bytes a boot of `design` on `layout` will back, roughly, and why. */
export function hostBytesEstimate(design: PmmDesign, layout: PmmLayout): HostBytes {
  const meta = design.metadataBytes(layout);
  const extra = design.hostBytes?.(layout);
  if (extra === undefined) return { bytes: meta, why: "its standing metadata is this large" };
  return { bytes: meta + extra.bytes, why: extra.why };
}

/**
 * Refuse up front (HOST_MEMORY, exit 2) when `design` on `layout` would back more host memory than
 * `budget`: boot, audit, pmm, demo, pt, compare and the server's boots all go through here. Returns the
 * estimate when it is within the budget.
 */
export function checkHostBudget(
  design: PmmDesign,
  layout: PmmLayout,
  budget = DEFAULT_BOOT_HOST_BUDGET,
): HostBytes {
  const est = hostBytesEstimate(design, layout);
  if (est.bytes <= budget) return est;
  const ramGiB = (framesIn(layout.usable) * 4096) / 2 ** 30;
  fail(
    "HOST_MEMORY",
    `the ${design.name} PMM on ${ramGiB.toFixed(1)} GiB of RAM would back about ${(est.bytes / 2 ** 30).toFixed(1)} GiB of host memory (${est.why}); ` +
      `the budget is ${(budget / 2 ** 30).toFixed(1)} GiB. Boot a part of the map with --mem (Linux's mem=), raise --host-budget, or pick a design with smaller metadata (bitmap).`,
  );
}
