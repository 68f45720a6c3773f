/**
 * Format detection: looks at the bytes and says which parser to use. Text formats are recognised by
 * their characteristic lines, binary formats by their headers and sizes. Every parser is reachable
 * through `parseAs`.
 */
import { fail } from "../errors.ts";
import { parseDmesg } from "./dmesg.ts";
import type { MemoryMap } from "./types.ts";

export const FORMATS = ["dmesg"] as const;
export type FormatId = (typeof FORMATS)[number];

export interface ParseOptions {
  source?: string;
  keepBootServices?: boolean;
}

const decoder = new TextDecoder("utf-8", { fatal: false });

export function parseAs(format: FormatId, bytes: Uint8Array, opts: ParseOptions = {}): MemoryMap {
  switch (format) {
    case "dmesg":
      return parseDmesg(decoder.decode(bytes), opts.source);
  }
}

export function detectFormat(bytes: Uint8Array, source?: string): FormatId {
  const text = decoder.decode(bytes.subarray(0, 1 << 20));
  if (/(?:BIOS-e820|user|Xen|modified|reserve setup_data): (?:\[mem|[0-9a-f]{16} -)/.test(text))
    return "dmesg";
  return fail(
    "UNKNOWN_FORMAT",
    `${source ?? "input"}: format not recognised (use --format; one of ${FORMATS.join(", ")})`,
  );
}
