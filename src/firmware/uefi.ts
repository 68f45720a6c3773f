/**
 * UEFI memory map: the EFI_MEMORY_DESCRIPTOR array from GetMemoryMap(), and the UEFI Shell `memmap`
 * command's text. Specified in the UEFI Specification 2.10, section 7.2 "EFI_BOOT_SERVICES.GetMemoryMap()".
 *
 *     offset 0      4      8              16             24             32             40 ... DescriptorSize
 *            +------+------+--------------+--------------+--------------+--------------+----------+
 *            | Type | pad  | PhysicalStart| VirtualStart | NumberOfPages| Attribute    | (future) |
 *            | u32  | u32  | u64          | u64          | u64 (4 KiB)  | u64          |          |
 *            +------+------+--------------+--------------+--------------+--------------+----------+
 *
 * Step by DescriptorSize (48 on real firmware, never sizeof = 40); a raw dump has no header, so the
 * size is the one (48, 40, 56, 64) under which every descriptor is well formed, unless given.
 * Shell text: `Type  Start  End(inclusive)  #Pages  Attributes`, e.g.
 *     BS_Code    0000000000000000-0000000000000FFF 0000000000000001 000000000000000F
 *
 * Conversion to E820 is Linux's EFI stub (drivers/firmware/efi/libstub/x86-stub.c `setup_e820()`):
 * Loader*, BootServices*, Conventional -> usable (soft reserved if Attribute has EFI_MEMORY_SP);
 * Reserved, RuntimeServices*, MMIO*, PalCode -> reserved; Unusable -> unusable; ACPIReclaim -> ACPI
 * data; ACPINVS -> ACPI NVS; Persistent -> persistent (type 7); Unaccepted -> usable (accepted on
 * use); unknown (OEM/OS) types are left out of the E820 table. `keepBootServices` keeps
 * BootServicesCode/Data reserved, as a kernel that calls boot services late must.
 */
import { fail, hex } from "../errors.ts";
import { Reader, Writer } from "./bytes.ts";
import { E820, e820TypeName } from "./e820-types.ts";
import { parseHex, splitLines, where, whereByte } from "./text.ts";
import type { Change, MapEntry, MemoryMap } from "./types.ts";

export const EFI_TYPES = [
  "Reserved",
  "LoaderCode",
  "LoaderData",
  "BootServicesCode",
  "BootServicesData",
  "RuntimeServicesCode",
  "RuntimeServicesData",
  "Conventional",
  "Unusable",
  "ACPIReclaim",
  "ACPINVS",
  "MMIO",
  "MMIOPortSpace",
  "PalCode",
  "Persistent",
  "Unaccepted",
] as const;
const SHELL_NAMES = [
  "Reserved",
  "LoaderCode",
  "LoaderData",
  "BS_Code",
  "BS_Data",
  "RT_Code",
  "RT_Data",
  "Available",
  "Unusable",
  "ACPI_Recl",
  "ACPI_NVS",
  "MMIO",
  "MMIO_Port",
  "PalCode",
  "Persistent",
  "Unaccepted",
];

export const EFI_MEMORY_SP = 0x40000n;
export const EFI_MEMORY_RUNTIME = 1n << 63n;

export interface EfiDescriptor {
  type: number;
  start: bigint;
  pages: bigint;
  attribute: bigint;
}

export interface UefiOptions {
  keepBootServices?: boolean;
  descriptorSize?: number;
}

/** EFI type (+attribute) -> E820 type, as the EFI stub's setup_e820(); undefined: left out. */
export function efiToE820(type: number, attribute: bigint, keepBootServices = false): number | undefined {
  if (type >= 1 && type <= 4 && keepBootServices && type >= 3) return E820.RESERVED;
  if ((type >= 1 && type <= 4) || type === 7)
    return attribute & EFI_MEMORY_SP ? E820.SOFT_RESERVED : E820.RAM;
  if (type === 0 || type === 5 || type === 6 || (type >= 11 && type <= 13)) return E820.RESERVED;
  return { 8: E820.UNUSABLE, 9: E820.ACPI, 10: E820.NVS, 14: E820.PMEM, 15: E820.RAM }[type];
}

/** Convert descriptors to E820 entries, with one change line per EFI type saying what it became. */
export function convertEfi(
  descs: readonly EfiDescriptor[],
  opts: UefiOptions = {},
): { entries: MapEntry[]; changes: Change[] } {
  const entries: MapEntry[] = [];
  const tally = new Map<string, { count: number; pages: bigint }>();
  for (const d of descs) {
    const t = efiToE820(d.type, d.attribute, opts.keepBootServices);
    const name = EFI_TYPES[d.type] ?? `type ${hex(d.type)}`;
    const key = `${name} -> ${t === undefined ? "left out (not a type the EFI stub knows)" : e820TypeName(t)}${d.attribute & EFI_MEMORY_SP && t === E820.SOFT_RESERVED ? " (EFI_MEMORY_SP)" : ""}`;
    const row = tally.get(key) ?? { count: 0, pages: 0n };
    tally.set(key, { count: row.count + 1, pages: row.pages + d.pages });
    if (t !== undefined) entries.push({ start: d.start, end: d.start + d.pages * 4096n - 1n, type: t });
  }
  const changes: Change[] = [...tally].map(([key, v]) => ({
    kind: "converted" as const,
    message: `${v.count} ${key.replace(" -> ", ` descriptor(s), ${v.pages} pages -> `)}`,
  }));
  if (opts.keepBootServices)
    changes.push({ kind: "note", message: "boot-services memory kept reserved (--keep-boot-services)" });
  return { entries, changes };
}

function readDescriptor(r: Reader, off: number): EfiDescriptor {
  return {
    type: r.u32(off, "Type"),
    start: r.u64(off + 8, "PhysicalStart"),
    pages: r.u64(off + 24, "NumberOfPages"),
    attribute: r.u64(off + 32, "Attribute"),
  };
}

function wellFormed(r: Reader, size: number): boolean {
  if (r.length === 0 || r.length % size !== 0) return false;
  for (let off = 0; off < r.length; off += size) {
    const d = readDescriptor(r, off);
    const knownType = d.type <= 15 || d.type >= 0x70000000;
    if (!knownType || r.u32(off + 4, "pad") !== 0 || d.start % 4096n !== 0n || d.pages === 0n) return false;
  }
  return true;
}

/** The descriptor size under which the dump is well formed (48 first, as real firmware uses). */
export function guessDescriptorSize(bytes: Uint8Array): number | undefined {
  const r = new Reader(bytes);
  return [48, 40, 56, 64].find((s) => wellFormed(r, s));
}

/** Parse a raw EFI_MEMORY_DESCRIPTOR array. */
export function parseUefiBin(bytes: Uint8Array, source?: string, opts: UefiOptions = {}): MemoryMap {
  const r = new Reader(bytes, source);
  const size = opts.descriptorSize ?? guessDescriptorSize(bytes);
  if (size === undefined || size < 40 || r.length % size !== 0) {
    fail(
      "BAD_DESCRIPTORS",
      `${whereByte(source, 0)}: not an EFI_MEMORY_DESCRIPTOR array (${r.length} bytes; tried DescriptorSize 48, 40, 56, 64: ` +
        "expected Type <= 15, zero pad, 4 KiB-aligned PhysicalStart and NumberOfPages > 0 in every descriptor)",
    );
  }
  const descs: EfiDescriptor[] = [];
  for (let off = 0; off < r.length; off += size) descs.push(readDescriptor(r, off));
  const { entries, changes } = convertEfi(descs, opts);
  return {
    format: "uefi",
    entries,
    changes: [{ kind: "note", message: `DescriptorSize ${size}` }, ...changes],
    source,
  };
}

const SHELL_ROW = /^(\w+)\s+([0-9a-f]{1,16})-([0-9a-f]{1,16})\s+([0-9a-f]{1,16})\s+([0-9a-f]{1,16})$/i;

/** Parse the UEFI Shell `memmap` output. */
export function parseUefiShell(text: string, source?: string, opts: UefiOptions = {}): MemoryMap {
  const descs: EfiDescriptor[] = [];
  for (const line of splitLines(text, false)) {
    const m = SHELL_ROW.exec(line.text);
    if (!m) continue;
    const at = where(source, line.no);
    const type =
      SHELL_NAMES.indexOf(m[1]) >= 0 ? SHELL_NAMES.indexOf(m[1]) : EFI_TYPES.indexOf(m[1] as "Reserved");
    if (type < 0)
      fail("BAD_TYPE", `${at}: unknown memory type '${m[1]}' (expected one of ${SHELL_NAMES.join(", ")})`);
    const start = parseHex(m[2], "Start", at);
    const end = parseHex(m[3], "End", at);
    const pages = parseHex(m[4], "# Pages", at);
    if (end + 1n !== start + pages * 4096n) {
      fail("BAD_LINE", `${at}: End ${hex(end)} does not match Start ${hex(start)} + ${pages} pages x 4 KiB`);
    }
    descs.push({ type, start, pages, attribute: parseHex(m[5], "Attributes", at) });
  }
  if (descs.length === 0)
    fail(
      "NO_TABLE",
      `${source ?? "input"}: no UEFI memmap rows (e.g. 'Available 0000000000001000-000000000009FFFF 000000000000009F 000000000000000F')`,
    );
  const { entries, changes } = convertEfi(descs, opts);
  return { format: "uefi", entries, changes, source };
}

/** E820 type -> EFI type and attribute for the emitter (and the page-alignment direction). */
function e820ToEfi(type: number): { type: number; attribute: bigint } {
  const wb = 0xfn;
  if (type === E820.RAM || type === E820.RESERVED_KERN) return { type: 7, attribute: wb };
  if (type === E820.SOFT_RESERVED) return { type: 7, attribute: wb | EFI_MEMORY_SP };
  const t =
    { [E820.ACPI]: 9, [E820.NVS]: 10, [E820.UNUSABLE]: 8, [E820.PMEM]: 14, [E820.PRAM]: 14 }[type] ?? 0;
  return { type: t, attribute: wb };
}

/**
 * Emit EFI_MEMORY_DESCRIPTORs (DescriptorSize 48). EFI counts whole 4 KiB pages: RAM is aligned
 * inward, everything else outward (and the sanitizer's "higher type wins" settles any new overlap).
 */
export function emitUefiBin(map: MemoryMap): { bytes: Uint8Array; changes: Change[] } {
  const changes: Change[] = [];
  const rows: EfiDescriptor[] = [];
  for (const e of map.entries) {
    const { type, attribute } = e820ToEfi(e.type);
    const ram = type === 7;
    const start = ram ? (e.start + 4095n) & ~4095n : e.start & ~4095n;
    const endEx = ram ? (e.end + 1n) & ~4095n : (e.end + 4096n) & ~4095n;
    if (start !== e.start || endEx !== e.end + 1n) {
      changes.push({
        kind: "trimmed",
        message: `${e820TypeName(e.type)} ${hex(e.start)}-${hex(e.end)} aligned ${ram ? "inward" : "outward"} to 4 KiB pages`,
      });
    }
    if (efiToE820(type, attribute) !== e.type && e.type !== E820.RESERVED_KERN) {
      changes.push({
        kind: "converted",
        message: `${e820TypeName(e.type)} at ${hex(e.start)} has no EFI type of its own: emitted as ${EFI_TYPES[type]}`,
      });
    }
    if (endEx > start) rows.push({ type, start, pages: (endEx - start) / 4096n, attribute });
  }
  const w = new Writer(rows.length * 48);
  rows.forEach((d, i) => {
    w.u32(i * 48, d.type);
    w.u64(i * 48 + 8, d.start);
    w.u64(i * 48 + 24, d.pages);
    w.u64(i * 48 + 32, d.attribute);
  });
  return { bytes: w.bytes, changes };
}
