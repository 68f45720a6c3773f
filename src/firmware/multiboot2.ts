/**
 * Multiboot2 boot information: the memory-map tag (type 6) and the basic meminfo tag (type 4).
 * Specified in the Multiboot2 Specification, section 3.6 "Boot information format"
 * (https://www.gnu.org/software/grub/manual/multiboot2/multiboot.html).
 *
 * The whole MBI:   u32 total_size | u32 reserved | tags..., each tag 8-byte aligned, ended by type 0.
 *
 * Memory map tag:  +0 u32 type = 6 | +4 u32 size | +8 u32 entry_size (24) | +12 u32 entry_version (0)
 *                  +16 entries, each entry_size bytes (step by entry_size, never by 24):
 *                      +0 u64 base_addr | +8 u64 length | +16 u32 type | +20 u32 reserved
 *                  types: 1 available, 3 ACPI reclaimable, 4 NVS, 5 defective, anything else reserved.
 * Basic meminfo:   +0 u32 type = 4 | +4 u32 size = 16 | +8 u32 mem_lower (KiB) | +12 u32 mem_upper (KiB)
 *
 * Input may be a whole MBI or just one memory-map tag.
 */
import { fail, hex } from "../errors.ts";
import { Reader, Writer } from "./bytes.ts";
import { E820, e820TypeName } from "./e820-types.ts";
import { whereByte } from "./text.ts";
import type { Change, MapEntry, MemoryMap } from "./types.ts";

const TAG_END = 0;
const TAG_BASIC_MEMINFO = 4;
const TAG_MMAP = 6;

/** Multiboot2 type -> E820 type: 1-5 are the same numbers; anything else means reserved. */
export function mb2ToE820(t: number): number {
  return t >= 1 && t <= 5 ? t : E820.RESERVED;
}

function parseMmapTag(r: Reader, off: number, changes: Change[]): MapEntry[] {
  const size = r.u32(off + 4, "memory-map tag size");
  const entrySize = r.u32(off + 8, "entry_size");
  if (size < 16 || off + size > r.length) {
    fail(
      "BAD_TAG",
      `${whereByte(r.source, off + 4)}: memory-map tag size ${size} does not fit the input (${r.length} bytes)`,
    );
  }
  if (entrySize < 24 || entrySize % 8 !== 0) {
    fail(
      "BAD_TAG",
      `${whereByte(r.source, off + 8)}: entry_size ${entrySize} (expected a multiple of 8, at least 24)`,
    );
  }
  const entries: MapEntry[] = [];
  for (let e = off + 16; e + entrySize <= off + size; e += entrySize) {
    const start = r.u64(e, "base_addr");
    const length = r.u64(e + 8, "length");
    const type = r.u32(e + 16, "type");
    const t = mb2ToE820(type);
    if (t !== type) {
      changes.push({
        kind: "converted",
        offset: e,
        message: `Multiboot2 type ${type} at ${hex(start)} means reserved`,
      });
    }
    entries.push({ start, end: start + length - 1n, type: t });
  }
  return entries;
}

function basicMeminfo(r: Reader, off: number, changes: Change[]): MapEntry[] {
  const lower = BigInt(r.u32(off + 8, "mem_lower"));
  const upper = BigInt(r.u32(off + 12, "mem_upper"));
  changes.push({
    kind: "note",
    offset: off,
    message: `no memory-map tag: using the basic meminfo tag (mem_lower ${lower} KiB at 0, mem_upper ${upper} KiB at 1 MiB)`,
  });
  return [
    { start: 0n, end: lower * 1024n - 1n, type: E820.RAM },
    { start: 0x100000n, end: 0x100000n + upper * 1024n - 1n, type: E820.RAM },
  ];
}

/** Walk an MBI's tags; returns the memory map (or the basic meminfo when there is no map). */
function walkMbi(r: Reader, changes: Change[]): MapEntry[] {
  let off = 8;
  let basic: number | undefined;
  while (off + 8 <= r.length) {
    const type = r.u32(off, "tag type");
    const size = r.u32(off + 4, "tag size");
    if (type === TAG_END) break;
    if (size < 8 || off + size > r.length) {
      fail(
        "BAD_TAG",
        `${whereByte(r.source, off + 4)}: tag ${type} has size ${size}, beyond the MBI (${r.length} bytes)`,
      );
    }
    if (type === TAG_MMAP) return parseMmapTag(r, off, changes);
    if (type === TAG_BASIC_MEMINFO) basic = off;
    off += (size + 7) & ~7;
  }
  if (basic !== undefined) return basicMeminfo(r, basic, changes);
  return fail(
    "NO_TABLE",
    `${r.source ?? "input"}: the Multiboot2 information has no memory-map (6) or basic meminfo (4) tag`,
  );
}

/** The highest tag type the Multiboot2 specification defines (21: image load base physical address). */
const LAST_TAG_TYPE = 21;

/** Why a memory-map tag at `off` (size already checked to fit) is malformed, or undefined. */
function mmapTagProblem(v: DataView, off: number, size: number): string | undefined {
  if (size < 16) return `byte offset ${off + 4}: memory-map tag size ${size} (expected at least 16)`;
  const entrySize = v.getUint32(off + 8, true);
  if (entrySize < 24 || entrySize % 8 !== 0)
    return `byte offset ${off + 8}: entry_size ${entrySize} (expected a multiple of 8, at least 24)`;
  const version = v.getUint32(off + 12, true);
  if (version !== 0) return `byte offset ${off + 12}: entry_version ${version} (expected 0)`;
  if ((size - 16) % entrySize !== 0)
    return `byte offset ${off + 4}: memory-map tag size ${size} is not 16 + a whole number of ${entrySize}-byte entries`;
  return undefined;
}

/**
 * Why these bytes are not a Multiboot2 boot information (or a bare memory-map tag), naming the byte
 * offset and what was expected; undefined when the structure validates: total_size, reserved 0, every
 * tag 8-byte aligned, at least 8 bytes, of a type the specification defines, inside total_size, and an
 * end tag (type 0, size 8). `trailing` accepts bytes after total_size (a dump of more memory).
 */
export function multiboot2Problem(bytes: Uint8Array, trailing = false): string | undefined {
  const n = bytes.length;
  const v = new DataView(bytes.buffer, bytes.byteOffset, n);
  if (n < 16) return `byte offset 0: ${n} bytes, shorter than the smallest Multiboot2 information (16 bytes)`;
  const first = v.getUint32(0, true);
  if (first === TAG_MMAP) {
    // A bare memory-map tag (type 6, size), possibly padded to 8 bytes.
    const size = v.getUint32(4, true);
    if (size > n)
      return `byte offset 4: memory-map tag size ${size}, but the input is ${n} bytes (truncated?)`;
    if (n - size >= 8 && !trailing)
      return `byte offset ${size}: ${n - size} bytes after the memory-map tag (size ${size})`;
    return mmapTagProblem(v, 0, size);
  }
  const total = first;
  if (total > n) return `byte offset 0: total_size ${total}, but the input is ${n} bytes (truncated?)`;
  if (total < 16 || total % 8 !== 0)
    return `byte offset 0: total_size ${total} (expected a multiple of 8, at least 16)`;
  if (total < n && !trailing) return `byte offset 0: total_size ${total}, but the input is ${n} bytes`;
  const reserved = v.getUint32(4, true);
  if (reserved !== 0) return `byte offset 4: reserved ${reserved} (expected 0)`;
  let off = 8;
  while (off + 8 <= total) {
    const type = v.getUint32(off, true);
    const size = v.getUint32(off + 4, true);
    if (type > LAST_TAG_TYPE) return `byte offset ${off}: tag type ${type} (expected 0-${LAST_TAG_TYPE})`;
    if (size < 8) return `byte offset ${off + 4}: tag ${type} has size ${size} (expected at least 8)`;
    if (size > total - off)
      return `byte offset ${off + 4}: tag ${type} has size ${size}, beyond total_size ${total}`;
    if (type === TAG_END) {
      if (size !== 8) return `byte offset ${off + 4}: end tag size ${size} (expected 8)`;
      return undefined;
    }
    if (type === TAG_MMAP) {
      const p = mmapTagProblem(v, off, size);
      if (p) return p;
    }
    off += (size + 7) & ~7;
  }
  return `byte offset ${Math.min(off, total)}: expected the end tag (type 0, size 8) before total_size ${total}`;
}

/** Parse a whole Multiboot2 MBI, or a bare memory-map tag (the structure is validated first). */
export function parseMultiboot2(bytes: Uint8Array, source?: string): MemoryMap {
  const problem = multiboot2Problem(bytes, true);
  if (problem) fail("BAD_MULTIBOOT2", `${source ?? "input"}: ${problem} (not valid Multiboot2 information)`);
  const r = new Reader(bytes, source);
  const changes: Change[] = [];
  const first = r.u32(0, "total_size or tag type");
  const bare = first === TAG_MMAP;
  const entries = bare ? parseMmapTag(r, 0, changes) : walkMbi(r, changes);
  if (!bare && first !== r.length) {
    changes.push({
      kind: "note",
      offset: 0,
      message: `MBI total_size ${first} differs from the input length ${r.length}`,
    });
  }
  return { format: "multiboot2", entries, changes, source };
}

/** Emit an MBI holding a basic meminfo tag and a memory-map tag (entry_size 24, version 0). */
export function emitMultiboot2(map: MemoryMap): { bytes: Uint8Array; changes: Change[] } {
  const changes: Change[] = [];
  const mmapSize = 16 + 24 * map.entries.length;
  const total = 8 + 16 + ((mmapSize + 7) & ~7) + 8;
  const w = new Writer(total);
  w.u32(0, total);
  const kib = (bytes: bigint) => Math.min(Number(bytes / 1024n), 0xffffffff);
  const low = map.entries.find((e) => e.type === E820.RAM && e.start === 0n);
  const up = map.entries.find((e) => e.type === E820.RAM && e.start <= 0x100000n && e.end >= 0x100000n);
  w.u32(8, TAG_BASIC_MEMINFO);
  w.u32(12, 16);
  w.u32(16, low ? kib(low.end + 1n) : 0);
  w.u32(20, up ? kib(up.end + 1n - 0x100000n) : 0);
  w.u32(24, TAG_MMAP);
  w.u32(28, mmapSize);
  w.u32(32, 24);
  map.entries.forEach((e, i) => {
    const t = mb2ToE820(e.type);
    if (t !== e.type)
      changes.push({
        kind: "converted",
        message: `${e820TypeName(e.type)} at ${hex(e.start)} has no Multiboot2 type: emitted as reserved (2)`,
      });
    w.u64(40 + i * 24, e.start);
    w.u64(48 + i * 24, e.end + 1n - e.start);
    w.u32(56 + i * 24, t);
  });
  w.u32(total - 8, TAG_END);
  w.u32(total - 4, 8);
  return { bytes: w.bytes, changes };
}
