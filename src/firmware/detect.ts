/**
 * Format detection: which parser reads these bytes. Binary inputs are told apart by structure
 * (Multiboot2 header/tag, Limine response, well-formed EFI descriptors, else an E820 array); text
 * inputs by their characteristic lines. `--format` overrides detection.
 */
import { fail } from "../errors.ts";
import { looksBinary, Reader } from "./bytes.ts";
import { parseDmesg } from "./dmesg.ts";
import { parseE820Bin } from "./e820-bin.ts";
import { parseIomem } from "./iomem.ts";
import { parseLimineBin, parseLimineText } from "./limine.ts";
import { parseMultiboot2 } from "./multiboot2.ts";
import { parseOwnJson, parseOwnYaml } from "./own-json.ts";
import { parseSysfs } from "./sysfs.ts";
import type { MemoryMap } from "./types.ts";
import { guessDescriptorSize, parseUefiBin, parseUefiShell } from "./uefi.ts";

export const FORMATS = [
  "dmesg",
  "sysfs",
  "iomem",
  "e820-bin",
  "multiboot2",
  "limine",
  "limine-bin",
  "uefi",
  "uefi-bin",
  "json",
  "yaml",
] as const;
export type FormatId = (typeof FORMATS)[number];

/** One line per format, for --help. */
export const FORMAT_HELP: Record<FormatId, string> = {
  dmesg: "Linux boot log or its BIOS-e820 / user: / Xen: table (modern and pre-3.9), or a whole boot log",
  sysfs: "dump of /sys/firmware/memmap (grep -r . /sys/firmware/memmap)",
  iomem: "/proc/iomem (read as root)",
  "e820-bin": "binary E820 table, 20- or 24-byte entries (INT 15h E820, boot_params)",
  multiboot2: "binary Multiboot2 boot information (whole MBI, or the type-6 memory-map tag)",
  limine: "Limine memmap as printed text (base/length/type lines)",
  "limine-bin": "binary Limine memmap response (revision, count, pointers, entries)",
  uefi: "UEFI Shell 'memmap' output",
  "uefi-bin": "binary EFI_MEMORY_DESCRIPTOR array (DescriptorSize 48/40/56/64 detected)",
  json: "pagelab's own JSON (what map --json prints)",
  yaml: "pagelab's own YAML (same schema)",
};

export interface ParseOptions {
  source?: string;
  keepBootServices?: boolean;
}

const decoder = new TextDecoder("utf-8", { fatal: false });

/** Parse with a given format (no sanitizing). */
export function parseAs(format: FormatId, bytes: Uint8Array, opts: ParseOptions = {}): MemoryMap {
  const text = () => decoder.decode(bytes);
  const src = opts.source;
  switch (format) {
    case "dmesg":
      return parseDmesg(text(), src);
    case "sysfs":
      return parseSysfs(text(), src);
    case "iomem":
      return parseIomem(text(), src);
    case "e820-bin":
      return parseE820Bin(bytes, src);
    case "multiboot2":
      return parseMultiboot2(bytes, src);
    case "limine":
      return parseLimineText(text(), src);
    case "limine-bin":
      return parseLimineBin(bytes, src);
    case "uefi":
      return parseUefiShell(text(), src, opts);
    case "uefi-bin":
      return parseUefiBin(bytes, src, opts);
    case "json":
      return parseOwnJson(text(), src);
    case "yaml":
      return parseOwnYaml(text(), src);
  }
}

/** 24-byte E820 entries with ACPI 3.0 attributes: every type non-zero, every ext word 0 or 1, some 1. */
function looksLikeAcpi3E820(r: Reader): boolean {
  if (r.length === 0 || r.length % 24 !== 0) return false;
  let enabled = false;
  for (let off = 0; off < r.length; off += 24) {
    const ext = r.u32(off + 20, "ext");
    if (r.u32(off + 16, "type") === 0 || ext > 1) return false;
    enabled ||= ext === 1;
  }
  return enabled;
}

function detectBinary(bytes: Uint8Array): FormatId {
  const r = new Reader(bytes);
  if (r.length >= 16) {
    const first = r.u32(0, "");
    if ((first === r.length && r.length % 8 === 0) || (first === 6 && r.u32(4, "") === r.length))
      return "multiboot2";
  }
  if (r.length >= 56) {
    const count = r.u64(8, "");
    if (r.u64(0, "") < 16n && count > 0n && BigInt(r.length) === 24n + 32n * count) return "limine-bin";
  }
  if (looksLikeAcpi3E820(r)) return "e820-bin";
  if (guessDescriptorSize(bytes) !== undefined) return "uefi-bin";
  return "e820-bin";
}

const TEXT_RULES: [FormatId, RegExp][] = [
  ["json", /^\s*[{[]/],
  [
    "uefi",
    /^\s*(?:BS_Code|BS_Data|Available|RT_Code|RT_Data|LoaderCode|LoaderData|ACPI_NVS|ACPI_Recl|Reserved|MMIO)\s+[0-9A-F]{16}-[0-9A-F]{16}\s/im,
  ],
  ["sysfs", /(?:^|\/)memmap\/\d+\/(?:start|end|type):/m],
  [
    "dmesg",
    /(?:BIOS-e820|BIOS-88|BIOS-e801|user|Xen|modified|reserve setup_data): (?:\[mem|[0-9a-f]{1,16} -)|HVM\d+: +\d+: [0-9a-f]{16} - /,
  ],
  ["iomem", /^ *[0-9a-f]{1,16}-[0-9a-f]{1,16} : /im],
  ["limine", /(?:start|base)\s*:\s*(?:0x)?[0-9a-f]+\s*,.*(?:type|size|length)\s*:/im],
  ["yaml", /^entries\s*:/m],
];

/** Detect the format of an input (throws UNKNOWN_FORMAT listing the formats). */
export function detectFormat(bytes: Uint8Array, source?: string): FormatId {
  if (bytes.length === 0) fail("EMPTY", `${source ?? "input"}: the input is empty`);
  if (looksBinary(bytes)) return detectBinary(bytes);
  const text = decoder.decode(bytes.subarray(0, 1 << 22));
  for (const [id, re] of TEXT_RULES) if (re.test(text)) return id;
  return fail(
    "UNKNOWN_FORMAT",
    `${source ?? "input"}: format not recognised (no BIOS-e820 lines, memmap rows, iomem lines...); name it with --format, one of ${FORMATS.join(", ")}`,
  );
}
