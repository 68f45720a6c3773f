/**
 * E820 type numbers and Linux's words for them.
 *
 * Numbers: ACPI spec "Address Range Types" (1-5, 7, 12 legacy PRAM) plus Linux's own
 * arch/x86/include/asm/e820/types.h (128 RESERVED_KERN, 0xefffffff SOFT_RESERVED). Words:
 * `e820_print_type()` in arch/x86/kernel/e820.c; kernels from 6.16 print `System RAM` and
 * `device reserved` for 1 and 2, and both spellings are accepted on input.
 */
import { fail } from "../errors.ts";

export const E820 = {
  RAM: 1,
  RESERVED: 2,
  ACPI: 3,
  NVS: 4,
  UNUSABLE: 5,
  PMEM: 7,
  PRAM: 12,
  RESERVED_KERN: 128,
  SOFT_RESERVED: 0xefffffff,
} as const;

/** Linux's word for a type, exactly as `e820_print_type()` prints it (pre-6.16 spelling). */
export function e820TypeName(type: number): string {
  switch (type) {
    case E820.RAM:
    case E820.RESERVED_KERN:
      return "usable";
    case E820.RESERVED:
      return "reserved";
    case E820.SOFT_RESERVED:
      return "soft reserved";
    case E820.ACPI:
      return "ACPI data";
    case E820.NVS:
      return "ACPI NVS";
    case E820.UNUSABLE:
      return "unusable";
    case E820.PMEM:
    case E820.PRAM:
      return `persistent (type ${type})`;
    default:
      return `type ${type}`;
  }
}

const WORDS: Record<string, number> = {
  usable: E820.RAM,
  "system ram": E820.RAM,
  ram: E820.RAM,
  reserved: E820.RESERVED,
  "device reserved": E820.RESERVED,
  "soft reserved": E820.SOFT_RESERVED,
  "acpi data": E820.ACPI,
  "acpi nvs": E820.NVS,
  unusable: E820.UNUSABLE,
  "reserved-kern": E820.RESERVED_KERN,
};

/** Parse a Linux type word (`usable`, `ACPI NVS`, `persistent (type 12)`, `type 20`); undefined if not one. */
export function parseE820TypeName(word: string): number | undefined {
  const w = word.trim().toLowerCase().replace(/\s+/g, " ");
  if (w in WORDS) return WORDS[w];
  const m = /^(?:persistent \(type (\d+)\)|type (\d+)|unknown (?:type )?(\d+))$/.exec(w);
  if (!m) return undefined;
  const n = Number(m[1] ?? m[2] ?? m[3]);
  return Number.isSafeInteger(n) && n <= 0xffffffff ? n : undefined;
}

/** Like parseE820TypeName but throws a PagelabError naming `where` (file:line) and the accepted words. */
export function requireE820Type(word: string, where: string): number {
  const t = parseE820TypeName(word);
  if (t === undefined) {
    fail(
      "BAD_TYPE",
      `${where}: unknown E820 type '${word}' (expected usable, reserved, ACPI data, ACPI NVS, unusable, ` +
        "persistent (type N), soft reserved, System RAM, device reserved or type N)",
    );
  }
  return t;
}

/** Types whose adjacent entries Linux never merges (`e820_nomerge()`): PRAM (12) and soft reserved. */
export function e820NoMerge(type: number): boolean {
  return type === E820.PRAM || type === E820.SOFT_RESERVED;
}

/** Types memblock treats as RAM (`e820__memblock_setup()`): usable and reserved-kern. */
export function isUsable(type: number): boolean {
  return type === E820.RAM || type === E820.RESERVED_KERN;
}
