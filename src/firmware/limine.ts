/**
 * Limine boot protocol memory map (LIMINE_MEMMAP_REQUEST), as text a kernel printed and as a binary
 * response. Specified in the Limine protocol, PROTOCOL.md "Memory Map Feature"
 * (https://github.com/limine-bootloader/limine-protocol).
 *
 * Response (binary):  +0 u64 revision | +8 u64 entry_count | +16 u64 entries (pointer to an array of
 *                     entry_count pointers), each pointing to an entry:
 *                         +0 u64 base | +8 u64 length | +16 u64 type
 * pagelab's binary dump stores the response, then the pointer array, then the entries; pointers are
 * addresses of a dump loaded at `entries - 24` (so a dump written at address 0 holds plain offsets).
 *
 * Types: 0 usable, 1 reserved, 2 ACPI reclaimable, 3 ACPI NVS, 4 bad memory, 5 bootloader reclaimable,
 * 6 executable and modules (kernel), 7 framebuffer, 8 reserved-mapped (newest). Sorted; usable and
 * bootloader-reclaimable entries are 4 KiB aligned and never overlap.
 *
 * Text: one entry per line, in the two shapes hobby kernels print:
 *     Start: 0x1000, Size: 324KiB, Type: Bootloader Reclaimable        (sizes may be rounded)
 *     base: 0x1000, type: 5, length: 0x51000
 */
import { fail, hex } from "../errors.ts";
import { Reader, Writer } from "./bytes.ts";
import { E820, e820TypeName } from "./e820-types.ts";
import { type Line, parseNumber, splitLines, where, whereByte } from "./text.ts";
import type { Change, MapEntry, MemoryMap } from "./types.ts";

export const LIMINE_TYPES = [
  "usable",
  "reserved",
  "acpi reclaimable",
  "acpi nvs",
  "bad memory",
  "bootloader reclaimable",
  "executable and modules",
  "framebuffer",
  "reserved mapped",
] as const;
const ALIASES: Record<string, number> = { kernel: 6, "kernel and modules": 6, "kernel/modules": 6, bad: 4 };

/**
 * Limine type -> E820 type. Bootloader-reclaimable, kernel/modules, framebuffer and reserved-mapped
 * memory is not free when the kernel starts, so it is reserved (a kernel reclaims type 5 itself later).
 */
export function limineToE820(t: number): number {
  return [E820.RAM, E820.RESERVED, E820.ACPI, E820.NVS, E820.UNUSABLE][t] ?? E820.RESERVED;
}

/** E820 type -> Limine type (types Limine lacks become 1 reserved). */
export function e820ToLimine(t: number): number {
  const i = [E820.RAM, E820.RESERVED, E820.ACPI, E820.NVS, E820.UNUSABLE].indexOf(t as 1);
  return i < 0 ? 1 : i;
}

function convert(type: number, start: bigint, changes: Change[], line?: number, offset?: number): number {
  const t = limineToE820(type);
  if (type > 4) {
    const name = LIMINE_TYPES[type] ?? `type ${type}`;
    changes.push({
      kind: "converted",
      line,
      offset,
      message: `Limine '${name}' at ${hex(start)} is not free at boot: reserved`,
    });
  }
  return t;
}

function typeFromText(word: string, at: string): number {
  const w = word.trim().toLowerCase().replace(/[_-]/g, " ");
  if (/^\d+$/.test(w)) return Number(w);
  const i = (LIMINE_TYPES as readonly string[]).indexOf(w);
  if (i >= 0) return i;
  if (w in ALIASES) return ALIASES[w];
  return fail(
    "BAD_TYPE",
    `${at}: unknown Limine type '${word}' (expected 0-8 or ${LIMINE_TYPES.join(", ")})`,
  );
}

/** `324KiB`, `254MiB`, `0x51000`, `4096` -> bytes; `rounded` if given in a unit (printed rounded). */
function sizeFromText(s: string, at: string): { bytes: bigint; rounded: boolean } {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)$/i.exec(s.trim());
  if (!m) return { bytes: parseNumber(s.trim(), "size", at), rounded: false };
  const shift = { b: 0n, k: 10n, m: 20n, g: 30n, t: 40n }[m[2][0].toLowerCase() as "b"];
  return { bytes: BigInt(m[1]) << shift, rounded: shift > 0n };
}

const FIELD = /(start|base|size|length|type)\s*[:=]\s*([^,;]+)/gi;

function textEntry(line: Line, source: string | undefined, changes: Change[]): MapEntry | undefined {
  const fields: Record<string, string> = {};
  for (const m of line.text.matchAll(FIELD)) fields[m[1].toLowerCase()] = m[2].trim();
  const base = fields.start ?? fields.base;
  const size = fields.size ?? fields.length;
  if (base === undefined && size === undefined && fields.type === undefined) return undefined;
  const at = where(source, line.no);
  if (base === undefined || size === undefined || fields.type === undefined) {
    fail(
      "BAD_LINE",
      `${at}: expected 'base/start', 'length/size' and 'type' fields, e.g. 'base: 0x1000, type: 5, length: 0x51000'`,
    );
  }
  const start = parseNumber(base, "base", at);
  const { bytes, rounded } = sizeFromText(size, at);
  if (rounded)
    changes.push({
      kind: "note",
      line: line.no,
      message: `size '${size}' at ${hex(start)} was printed in rounded units`,
    });
  return {
    start,
    end: start + bytes - 1n,
    type: convert(typeFromText(fields.type, at), start, changes, line.no),
  };
}

/** Parse a Limine memmap printed as text. */
export function parseLimineText(text: string, source?: string): MemoryMap {
  const changes: Change[] = [];
  const entries: MapEntry[] = [];
  for (const line of splitLines(text)) {
    if (line.text === "" || line.text.startsWith("#") || /^amount of entries/i.test(line.text)) continue;
    const e = textEntry(line, source, changes);
    if (e) entries.push(e);
  }
  if (entries.length === 0)
    fail(
      "NO_TABLE",
      `${source ?? "input"}: no Limine memmap lines (e.g. 'base: 0x1000, type: 5, length: 0x51000')`,
    );
  return { format: "limine", entries, changes, source };
}

/** Parse a binary Limine memmap response dump (see the header for the layout). */
export function parseLimineBin(bytes: Uint8Array, source?: string): MemoryMap {
  const r = new Reader(bytes, source);
  const count = r.u64(8, "entry_count");
  const ptr = r.u64(16, "entries pointer");
  if (count === 0n || count * 32n + 24n > BigInt(r.length)) {
    fail(
      "BAD_COUNT",
      `${whereByte(source, 8)}: entry_count ${count} does not fit ${r.length} bytes (32 bytes per entry)`,
    );
  }
  const base = ptr - 24n; // where the dump was loaded
  const changes: Change[] = [];
  const entries: MapEntry[] = [];
  for (let i = 0; i < Number(count); i++) {
    const p = r.u64(24 + i * 8, `entry pointer ${i}`) - base;
    if (p < 0n || p + 24n > BigInt(r.length)) {
      fail("BAD_POINTER", `${whereByte(source, 24 + i * 8)}: entry pointer ${i} points outside the dump`);
    }
    const off = Number(p);
    const start = r.u64(off, "base");
    const type = r.u64(off + 16, "type");
    if (type > 0xffffn)
      fail("BAD_TYPE", `${whereByte(source, off + 16)}: Limine type ${type} (expected 0-8)`);
    entries.push({
      start,
      end: start + r.u64(off + 8, "length") - 1n,
      type: convert(Number(type), start, changes, undefined, off),
    });
  }
  return { format: "limine", entries, changes, source };
}

/** Emit a binary Limine memmap response (revision 0), loaded at address 0. */
export function emitLimineBin(map: MemoryMap): { bytes: Uint8Array; changes: Change[] } {
  const n = map.entries.length;
  const w = new Writer(24 + 8 * n + 24 * n);
  const changes: Change[] = [];
  w.u64(8, BigInt(n));
  w.u64(16, 24n);
  map.entries.forEach((e, i) => {
    const off = 24 + 8 * n + 24 * i;
    const t = e820ToLimine(e.type);
    if (limineToE820(t) !== e.type)
      changes.push({
        kind: "converted",
        message: `${e820TypeName(e.type)} at ${hex(e.start)} has no Limine type: emitted as reserved (1)`,
      });
    w.u64(24 + 8 * i, BigInt(off));
    w.u64(off, e.start);
    w.u64(off + 8, e.end + 1n - e.start);
    w.u64(off + 16, BigInt(t));
  });
  return { bytes: w.bytes, changes };
}
