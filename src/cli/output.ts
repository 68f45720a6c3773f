import Table from "cli-table3";
import pc from "picocolors";
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

/**
 * Whether stdout gets colour: picocolors' own answer (NO_COLOR, FORCE_COLOR, --no-color, a TTY),
 * and never into a pipe or file unless FORCE_COLOR asks.
 */
export const colour = pc.createColors(
  pc.isColorSupported && (process.stdout.isTTY === true || !!process.env.FORCE_COLOR),
);

type TableOptions = ConstructorParameters<typeof Table>[0];
/** A cli-table3 table that colours its head and border only when `colour` does (it ignores NO_COLOR). */
export function table(opts: TableOptions = {}): InstanceType<typeof Table> {
  const on = colour.isColorSupported;
  return new Table({ ...opts, style: { ...(on ? {} : { head: [], border: [] }), ...(opts?.style ?? {}) } });
}
