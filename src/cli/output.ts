/** Small helpers shared by the command files: JSON printing, option parsing. */
import { fail } from "../errors.ts";
import type { Levels } from "../machine/x86/vaddr.ts";

/** Print a value as JSON (bigints as hex strings). */
export function printJson(value: unknown): void {
  process.stdout.write(
    `${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 2)}\n`,
  );
}

export function parseLevels(s: string): Levels {
  if (s !== "4" && s !== "5") fail("BAD_OPTION", `--levels must be 4 or 5 (got "${s}")`);
  return Number(s) as Levels;
}

export function parseIntOption(name: string, min: number, max: number) {
  return (s: string): number => {
    const v = Number(s);
    if (!Number.isInteger(v) || v < min || v > max)
      fail("BAD_OPTION", `${name} must be an integer from ${min} to ${max} (got "${s}")`);
    return v;
  };
}
