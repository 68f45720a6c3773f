/**
 * Every kernel-mapping strategy by its CLI name, beside the PMM registry (../pmm/designs.ts). Each entry
 * builds a fresh strategy (a strategy holds the state of one boot).
 */
import { fail } from "../../errors.ts";
import { DirectStrategy } from "./direct.ts";
import { HybridStrategy } from "./hybrid.ts";
import { PoolStrategy } from "./pool.ts";
import { QuickmapStrategy } from "./quickmap.ts";
import { RecursiveStrategy } from "./recursive.ts";
import type { KmapName, KmapStrategy } from "./strategy.ts";

export const STRATEGIES: Record<KmapName, () => KmapStrategy> = {
  direct: () => new DirectStrategy(),
  recursive: () => new RecursiveStrategy(),
  quickmap: () => new QuickmapStrategy(),
  hybrid: () => new HybridStrategy(),
  pool: () => new PoolStrategy(),
};

export const KMAP_NAMES = Object.keys(STRATEGIES) as KmapName[];

export function makeStrategy(name: string): KmapStrategy {
  const make = Object.hasOwn(STRATEGIES, name) ? STRATEGIES[name as KmapName] : undefined;
  if (make === undefined)
    return fail("BAD_OPTION", `no kernel-mapping strategy '${name}' (choose ${KMAP_NAMES.join(", ")})`);
  return make();
}
