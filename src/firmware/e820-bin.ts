/**
 * E820 binary table: what BIOS INT 15h AX=E820h returns, and `boot_params.e820_table` (20-byte entries).
 * Specified by ACPI ("Address Range Descriptor Structure", ACPI 6.x section 15.1) and Linux's
 * arch/x86/include/uapi/asm/setup_data.h `struct boot_e820_entry`.
 *
 *     offset  0        8        16       20       24
 *             +--------+--------+--------+--------+
 *             | base   | length | type   | ext    |   ext: ACPI 3.0 extended attributes (24-byte
 *             | u64    | u64    | u32    | u32    |   entries only; bit 0 "enabled"). Linux asks for
 *             +--------+--------+--------+--------+   20-byte entries and never reads it.
 *
 * Entries are back to back, no header; the entry size is 20 or 24 (chosen from the length, or given).
 */
import { fail, hex } from "../errors.ts";
import { Reader, Writer } from "./bytes.ts";
import type { Change, MapEntry, MemoryMap } from "./types.ts";
import { whereByte } from "./text.ts";

/** Pick 20 or 24 from the byte length; when both divide it, 24 wins if every ext word looks like one. */
function entrySize(r: Reader): 20 | 24 {
  const by20 = r.length % 20 === 0;
  const by24 = r.length % 24 === 0;
  if (!by20 && !by24) {
    const partial = r.length - Math.min(r.length % 24, r.length % 20);
    fail(
      "BAD_LENGTH",
      `${whereByte(r.source, partial)}: the input (${r.length} bytes) is not a whole number of 20- or 24-byte E820 entries`,
    );
  }
  if (by20 !== by24) return by24 ? 24 : 20;
  for (let off = 0; off < r.length; off += 24) if (r.u32(off + 20, "ext attributes") > 0xf) return 20;
  return 24;
}

/** Parse an E820 binary table (20- or 24-byte entries; `size` forces one). */
export function parseE820Bin(bytes: Uint8Array, source?: string, size?: 20 | 24): MemoryMap {
  const r = new Reader(bytes, source);
  if (r.length === 0) fail("EMPTY", `${source ?? "input"}: empty E820 table`);
  const stride = size ?? entrySize(r);
  if (r.length % stride !== 0) {
    fail(
      "BAD_LENGTH",
      `${whereByte(source, r.length - (r.length % stride))}: trailing partial ${stride}-byte entry`,
    );
  }
  const entries: MapEntry[] = [];
  const changes: Change[] = [];
  for (let off = 0; off < r.length; off += stride) {
    const start = r.u64(off, "base");
    const length = r.u64(off + 8, "length");
    const type = r.u32(off + 16, "type");
    entries.push({ start, end: start + length - 1n, type });
    if (stride === 24 && (r.u32(off + 20, "ext attributes") & 1) === 0) {
      changes.push({
        kind: "note",
        offset: off,
        message: `entry at byte ${off} (${hex(start)}) has ACPI 3.0 'enabled' bit clear; Linux ignores the attribute and keeps it`,
      });
    }
  }
  return { format: "e820-bin", entries, changes, source };
}

/** Emit 24-byte entries (ext attributes = 1, enabled), as INT 15h E820 with ECX=24 returns them. */
export function emitE820Bin(map: MemoryMap): Uint8Array {
  const w = new Writer(map.entries.length * 24);
  map.entries.forEach((e, i) => {
    w.u64(i * 24, e.start);
    w.u64(i * 24 + 8, e.end + 1n - e.start);
    w.u32(i * 24 + 16, e.type);
    w.u32(i * 24 + 20, 1);
  });
  return w.bytes;
}
