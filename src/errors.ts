/**
 * One error type for every bad input pagelab meets. `code` is stable (scripts and tests match on it);
 * `message` names the file, line, byte offset or field and what was expected.
 */
export class PagelabError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;

  /**
   * `instanceof` by brand, not by class identity: a design file the user wrote imports pagelab from
   * its sources while the CLI may run from the built bundle, two copies of this class whose errors
   * must both be recognised (a clear line and exit 2, never a crash report).
   */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return (
      x instanceof Error && x.name === "PagelabError" && typeof (x as { code?: unknown }).code === "string"
    );
  }

  constructor(code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "PagelabError";
    this.code = code;
    this.details = details;
  }
}

export function fail(code: string, message: string, details: Record<string, unknown> = {}): never {
  throw new PagelabError(code, message, details);
}

/** Format a physical or virtual address (number below 2^53, or bigint) as 0x%016x. */
export function hex64(v: number | bigint): string {
  return `0x${BigInt(v).toString(16).padStart(16, "0")}`;
}

/**
 * Format as short hex (0x1f000, -0x1). A number that is no integer (a caller's bad frame number,
 * 2046.5, NaN) is printed as it is: an error message about it must not throw in its turn.
 */
export function hex(v: number | bigint): string {
  if (typeof v === "number" && !Number.isInteger(v)) return String(v);
  const b = BigInt(v);
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}
