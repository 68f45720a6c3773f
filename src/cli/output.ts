/** Small helpers shared by the command files: JSON printing, option parsing. */

/** Print a value as JSON (bigints as hex strings). */
export function printJson(value: unknown): void {
  process.stdout.write(
    `${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 2)}\n`,
  );
}

export { parseLevels } from "./options.ts";
/** An integer option from `min` to `max` (the shared parser of options.ts). */
export { intParser as parseIntOption } from "./options.ts";
