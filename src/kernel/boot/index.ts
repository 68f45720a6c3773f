/** The boot sequence and what it is made of (see boot.ts for the steps). */
export * from "./boot.ts";
export * from "./budget.ts";
export { bootAuditor, checkBoot, tableFrames } from "./check.ts";
export type { BootStep } from "./narrator.ts";
export * from "./options.ts";
export * from "./ram.ts";
export { KMAP_NAMES, makeStrategy } from "../kmap/strategies.ts";
export { PmmFrames } from "../pmm/frame-source.ts";
