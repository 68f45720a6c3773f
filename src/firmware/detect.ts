/**
 * Format detection: which parser reads these bytes. Binary inputs are told apart by structure
 * (Multiboot2 header/tag, Limine response, well-formed EFI descriptors, else an E820 array); text
 * inputs by their characteristic lines. `--format` overrides detection.
 */
import { fail } from "../errors.ts";
import { looksBinary } from "./bytes.ts";
import { parseDmesg } from "./dmesg.ts";
import { parseE820Bin } from "./e820-bin.ts";
import { parseIomem } from "./iomem.ts";
import { parseLimineBin, parseLimineText } from "./limine.ts";
import { multiboot2Problem, parseMultiboot2 } from "./multiboot2.ts";
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

/** E820 types a real table holds: ACPI's 1-7, 12 (PRAM), and the rest of a small range, 0xefffffff. */
function plausibleE820Type(t: number): boolean {
  return (t >= 1 && t <= 20) || t === 0xefffffff;
}

/** Why these bytes are not an E820 array of `stride`-byte entries (undefined: they are). */
function e820Problem(v: DataView, stride: 20 | 24): string | undefined {
  if (v.byteLength % stride !== 0)
    return `byte offset ${v.byteLength - (v.byteLength % stride)}: a partial ${stride}-byte entry (the input is ${v.byteLength} bytes)`;
  for (let off = 0; off < v.byteLength; off += stride) {
    const type = v.getUint32(off + 16, true);
    if (!plausibleE820Type(type))
      return `byte offset ${off + 16}: type ${type} is not an E820 type (expected 1-20 or 0xefffffff)`;
    if (stride === 24 && v.getUint32(off + 20, true) > 0xf)
      return `byte offset ${off + 20}: ACPI 3.0 attributes 0x${v.getUint32(off + 20, true).toString(16)} (expected bits 0-3 only)`;
  }
  return undefined;
}

/** Why these bytes are not a binary Limine memmap response (undefined: they are). */
function limineProblem(v: DataView): string | undefined {
  const n = v.byteLength;
  if (n < 56) return `byte offset 0: ${n} bytes, shorter than a response with one entry (56 bytes)`;
  const revision = v.getBigUint64(0, true);
  if (revision >= 16n) return `byte offset 0: revision ${revision} (expected a small number)`;
  const count = v.getBigUint64(8, true);
  if (count === 0n || 24n + 32n * count !== BigInt(n))
    return `byte offset 8: entry_count ${count} (expected ${Math.floor((n - 24) / 32)}: 24 bytes of header, 8 + 24 bytes per entry)`;
  const base = v.getBigUint64(16, true) - 24n;
  for (let i = 0; i < Number(count); i++) {
    const p = v.getBigUint64(24 + 8 * i, true) - base;
    if (p < 0n || p + 24n > BigInt(n))
      return `byte offset ${24 + 8 * i}: entry pointer ${i} points outside the dump`;
    const type = v.getBigUint64(Number(p) + 16, true);
    if (type > 8n) return `byte offset ${Number(p) + 16}: Limine type ${type} (expected 0-8)`;
  }
  return undefined;
}

/**
 * Binary formats are chosen only when their structure validates; bytes that are none of them are an
 * error listing, per format, the first byte offset that did not fit and what was expected there.
 */
function detectBinary(bytes: Uint8Array, source?: string): FormatId {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const problems: [FormatId, string][] = [];
  const mb2 = multiboot2Problem(bytes);
  if (!mb2) return "multiboot2";
  problems.push(["multiboot2", mb2]);
  const limine = limineProblem(v);
  if (!limine) return "limine-bin";
  problems.push(["limine-bin", limine]);
  // 24-byte entries with the ACPI 3.0 'enabled' bit set somewhere are E820 before they are EFI.
  if (bytes.length % 24 === 0 && !e820Problem(v, 24)) {
    for (let off = 20; off < bytes.length; off += 24) if (v.getUint32(off, true) & 1) return "e820-bin";
  }
  if (guessDescriptorSize(bytes) !== undefined) return "uefi-bin";
  problems.push([
    "uefi-bin",
    "no DescriptorSize (48, 40, 56, 64) gives Type <= 15, zero pad, 4 KiB-aligned PhysicalStart and NumberOfPages > 0 in every descriptor",
  ]);
  const e24 = e820Problem(v, 24);
  const e20 = e820Problem(v, 20);
  if (!e24 || !e20) return "e820-bin";
  problems.push(["e820-bin", bytes.length % 24 === 0 || bytes.length % 20 !== 0 ? e24 : e20]);
  return fail(
    "UNKNOWN_FORMAT",
    `${source ?? "input"}: binary input (${bytes.length} bytes) that validates as none of the binary formats:\n` +
      problems.map(([f, p]) => `  ${f}: ${p}`).join("\n") +
      "\n(name the format with --format if you know it; a truncated file is the usual cause)",
  );
}

const TEXT_RULES: [FormatId, RegExp][] = [
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

/** A kernel log line's wrapping: `[    0.000000]`, `<6>`, `Dec  5 10:00:00 host kernel:`, `[Sat Dec  5 …]`. */
const KERNEL_LOG_LINE =
  /^\s*(?:<\d{1,3}>)?(?:\[ *\d+\.\d+\]|\[[A-Z][a-z]{2} [^\]\n]*\d\d:\d\d[^\]\n]*\]|[A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d\S* \S+ kernel:)/m;

/** Does the text parse as JSON (an object or array)? Only tried when it starts with `{` or `[`. */
function parsesAsJson(bytes: Uint8Array): boolean {
  try {
    const v: unknown = JSON.parse(decoder.decode(bytes));
    return typeof v === "object" && v !== null;
  } catch {
    return false;
  }
}

/**
 * Detect the format of an input (throws UNKNOWN_FORMAT listing the formats). Text is told by its
 * content, never by its first character: JSON only when the whole text parses as JSON, dmesg by its
 * table lines anywhere in the text (under any timestamp or syslog prefix).
 */
export function detectFormat(bytes: Uint8Array, source?: string): FormatId {
  if (bytes.length === 0) fail("EMPTY", `${source ?? "input"}: the input is empty`);
  if (looksBinary(bytes)) return detectBinary(bytes, source);
  const text = decoder.decode(bytes.subarray(0, 1 << 22));
  const bracket = /^\s*([{[])/.exec(text)?.[1];
  if (bracket && parsesAsJson(bytes)) return "json";
  for (const [id, re] of TEXT_RULES) if (re.test(text)) return id;
  // A kernel log without a table: dmesg's parser says what it looked for.
  if (KERNEL_LOG_LINE.test(text)) return "dmesg";
  // Broken JSON (an object): the JSON parser's message is the useful one.
  if (bracket === "{") return "json";
  return fail(
    "UNKNOWN_FORMAT",
    `${source ?? "input"}: format not recognised (no BIOS-e820 lines, memmap rows, iomem lines...)${bracket === "[" ? "; it starts with '[' but is not JSON" : ""}; name it with --format, one of ${FORMATS.join(", ")}`,
  );
}
