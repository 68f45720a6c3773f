/**
 * One logical map written in every format pagelab reads, binary where the format is binary, so users can
 * feed their own kernel: `pagelab map convert FILE --to e820|multiboot2|limine|uefi|json --out F`.
 * The map is sanitized first; what a target format cannot say (a type it lacks, bytes that are not whole
 * EFI pages) is converted and reported in `changes`.
 */
import { fail } from "../errors.ts";
import type { FormatId } from "./detect.ts";
import { emitE820Bin } from "./e820-bin.ts";
import { emitLimineBin } from "./limine.ts";
import { emitMultiboot2 } from "./multiboot2.ts";
import { toOwnJson } from "./own-json.ts";
import { sanitize } from "./sanitize.ts";
import type { Change, MemoryMap } from "./types.ts";
import { emitUefiBin } from "./uefi.ts";

export const EMIT_FORMATS = ["e820", "multiboot2", "limine", "uefi", "json"] as const;
export type EmitFormat = (typeof EMIT_FORMATS)[number];

/** The reader format id that reads each emitted format back. */
export const READ_BACK: Record<EmitFormat, FormatId> = {
  e820: "e820-bin",
  multiboot2: "multiboot2",
  limine: "limine-bin",
  uefi: "uefi-bin",
  json: "json",
};

export interface Emitted {
  bytes: Uint8Array;
  changes: Change[];
  /** Format id to read it back with. */
  readBack: FormatId;
}

export function emitMap(map: MemoryMap, to: string): Emitted {
  if (!(EMIT_FORMATS as readonly string[]).includes(to)) {
    fail("BAD_FORMAT", `cannot emit '${to}' (expected one of ${EMIT_FORMATS.join(", ")})`);
  }
  const format = to as EmitFormat;
  const clean = map.sanitized ? map : sanitize(map);
  const readBack = READ_BACK[format];
  switch (format) {
    case "e820":
      return { bytes: emitE820Bin(clean), changes: [], readBack };
    case "multiboot2":
      return { ...emitMultiboot2(clean), readBack };
    case "limine":
      return { ...emitLimineBin(clean), readBack };
    case "uefi":
      return { ...emitUefiBin(clean), readBack };
    case "json":
      return {
        bytes: new TextEncoder().encode(`${JSON.stringify(toOwnJson(clean), null, 2)}\n`),
        changes: [],
        readBack,
      };
  }
}
