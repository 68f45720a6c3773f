/**
 * The one data type every firmware-map parser produces and every consumer reads: `MemoryMap`.
 *
 * A map is a list of physical address ranges, each tagged with an **E820 numeric type** (the lingua
 * franca: Multiboot2, Limine and UEFI types are converted to E820 on input, see e820-types.ts). Entries
 * are `bigint` because a firmware table may describe addresses up to 2^64 - 1; use the number helpers in
 * frames.ts (`usableFrameRanges`, `usableBytes`) once the map is sanitized: usable RAM always lies below
 * 2^52, so frame numbers and byte counts fit in plain numbers.
 *
 * `end` is INCLUSIVE, as Linux prints it (`[mem 0x0000000000100000-0x00000000bffdffff]`); the exclusive
 * end is `end + 1n`. Parsers return entries as the input gave them (unsorted, overlapping, possibly
 * zero-length: `end === start - 1n`); `sanitize()` (sanitize.ts) turns them into Linux's table and
 * reports every change in `changes`.
 */

/** One range. `type` is the E820 type number (1 usable, 2 reserved, ..., 0xefffffff soft reserved). */
export interface MapEntry {
  start: bigint;
  /** Inclusive last byte. `end < start` only for zero-length (end = start - 1) input entries. */
  end: bigint;
  type: number;
}

/** What a sanitizer, converter or Linux edit did, and why (SerenityOS-style correction log). */
export type ChangeKind =
  | "sorted" // the input was not in address order
  | "split" // one input entry became several output entries
  | "merged" // several input entries (adjacent or overlapping, same type) became one
  | "dropped" // an entry vanished (zero length, wrapping, or completely covered)
  | "relabelled" // (part of) an entry got another type (overlap: the higher type number wins)
  | "converted" // a non-E820 type was mapped to an E820 type (UEFI, Multiboot2, Limine)
  | "updated" // a Linux early edit changed a type (`e820: update`)
  | "removed" // a Linux early edit removed a range (`e820: remove`)
  | "trimmed" // a range was shrunk to page boundaries
  | "note"; // anything else worth knowing (kept entries, ignored lines, options)

export interface Change {
  kind: ChangeKind;
  /** One human sentence: what happened to which range and why. */
  message: string;
  start?: bigint;
  /** Inclusive. */
  end?: bigint;
  /** 1-based line (text inputs) or byte offset (binary inputs) of the input that caused it. */
  line?: number;
  offset?: number;
}

/** A NUMA affinity range (from ACPI SRAT lines of a boot log, or a preset). `end` inclusive. */
export interface NodeRange {
  node: number;
  start: bigint;
  end: bigint;
}

/**
 * A Linux early edit of the e820 table, as printed in a boot log:
 * `e820: update [mem 0x00000000-0x00000fff] usable ==> reserved` or `e820: remove [mem a-b] usable`.
 * `beforeMemblock` tells whether Linux made the edit before `e820__memblock_setup()` copied the usable
 * ranges into memblock.memory (only those edits change memblock.memory; see memblock.ts).
 */
export interface E820Edit {
  op: "update" | "remove";
  start: bigint;
  /** Inclusive. */
  end: bigint;
  /** The type the edit applies to (`usable`), E820 number. */
  fromType: number;
  /** The new type for `update`. */
  toType?: number;
  line?: number;
  beforeMemblock: boolean;
  /** The raw line. */
  text: string;
}

/** What a whole Linux boot log adds beyond the table (memblock.ts uses it to rebuild memblock.memory). */
export interface BootLogInfo {
  /** Early edits, in log order. */
  edits: E820Edit[];
  /**
   * Later printouts of the whole table (`extended physical RAM map:`, `user-defined physical RAM map:`
   * after mem=/memmap=, `modified physical RAM map:`): each shows the table's state at its line.
   */
  laterTables: { header: string; line: number; entries: MapEntry[] }[];
  /** Line at which Linux copied the table into memblock (edits on earlier lines count), if known. */
  memblockLine?: number;
  /** NUMA affinity from `ACPI: SRAT: Node N PXM P [mem a-b]` lines (empty: no NUMA, one node 0). */
  srat: NodeRange[];
  /** The log's own `Early memory node ranges` lines, parsed (for checking our reconstruction). */
  nodeRanges: NodeRange[];
  /** `Memory: A/BK available`: B in KiB, when present. */
  memoryTotalKiB?: number;
  commandLine?: string;
}

/** The result of every parser, of `sanitize`, of `getPreset` and of `loadMap`. */
export interface MemoryMap {
  /** Input format id (`dmesg`, `e820-bin`, `multiboot2`, `limine`, `uefi`, `json`, `preset:qemu:4G`…). */
  format: string;
  entries: MapEntry[];
  /** Everything the parser, converter and sanitizer changed, in order. */
  changes: Change[];
  /** NUMA affinity ranges, if the input says (SRAT lines, `numa:` presets, own JSON). */
  nodes?: NodeRange[];
  /** Present when the input was a whole Linux boot log. */
  log?: BootLogInfo;
  /** True once `sanitize()` has produced `entries` (sorted, non-overlapping, merged as Linux would). */
  sanitized?: boolean;
  /** Where it came from (file name), for messages. */
  source?: string;
}

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
/** 2^64: exclusive ends may reach it; an inclusive end never does. */
export const TWO_64 = 1n << 64n;
