/**
 * Every PMM design by its CLI name. Each entry builds a fresh `PmmDesign` (designs are stateless
 * factories; `create` makes the allocator).
 */
import { fail } from "../../errors.ts";
import { bitmapDesign } from "./bitmap.ts";
import { buddyDesign } from "./buddy.ts";
import { colourStacksDesign, numaDesign, zonedDesign } from "./compose.ts";
import { freeListDesign } from "./freelist.ts";
import { hugePoolDesign } from "./huge-pool.ts";
import type { PmmDesign } from "./interface.ts";
import { largeStacksDesign } from "./large-stacks.ts";
import { stackDesign } from "./stack.ts";
import { stackPagesDesign } from "./stack-pages.ts";

export const DESIGNS: Record<string, () => PmmDesign> = {
  stack: () => stackDesign(),
  "stack-pages": () => stackPagesDesign(),
  freelist: () => freeListDesign(),
  bitmap: () => bitmapDesign(),
  buddy: () => buddyDesign(),
  "buddy-64": () => buddyDesign({ recordBytes: 64 }),
  "buddy-mt": () => buddyDesign({ migrate: true }),
  "zoned-buddy": () => zonedDesign(),
  "numa-buddy": () => numaDesign(),
  "colour-stacks": () => colourStacksDesign(),
  "huge-pool": () => hugePoolDesign(),
  "large-stacks": () => largeStacksDesign(),
};

export const DESIGN_NAMES = Object.keys(DESIGNS);

export function getDesign(name: string): PmmDesign {
  const make = Object.hasOwn(DESIGNS, name) ? DESIGNS[name] : undefined;
  if (make === undefined)
    fail("UNKNOWN_DESIGN", `no PMM design '${name}' (designs: ${DESIGN_NAMES.join(", ")})`);
  return make();
}
