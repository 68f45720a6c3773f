/**
 * Property-test driver for the designs' tests: the driver itself lives in src/kernel/pmm/validate.ts
 * (bring-your-own allocators use it at run time); here it is asserted with the fixed seed.
 */
import { expect } from "vitest";
import { PagelabError } from "../../../src/errors.ts";
import type { PmmDesign } from "../../../src/kernel/pmm/interface.ts";
import { type HarnessOptions, validateDesign } from "../../../src/kernel/pmm/validate.ts";

export { type HarnessOptions, type Op, opArb, runOps, SEED } from "../../../src/kernel/pmm/validate.ts";

/** Random op sequences with the auditor after every step; the shrunk failing sequence is printed. */
export function property(design: PmmDesign, o: HarnessOptions): void {
  const v = validateDesign(design, o);
  if (!v.ok) {
    throw new Error(
      `${design.name} (seed ${v.seed}): ${v.failure!.message}\n  ${v.failure!.steps.join("\n  ")}`,
    );
  }
  expect(v.runs).toBe(o.runs ?? 25);
}

/** The code of the typed error `f` throws (it must be a PagelabError), or "none" when it returns. */
export function errorCode(f: () => void): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PagelabError);
    return (e as PagelabError).code;
  }
  return "none";
}
