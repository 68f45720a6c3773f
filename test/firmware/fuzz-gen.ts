/**
 * Fuzzing support shared by the seeded test (test/firmware/fuzz.test.ts) and the 10^6-inputs-per-format
 * benchmark (bench/fuzz-parsers.bench.ts): valid seed inputs for every parser, fast-check arbitraries that
 * mutate them (byte flips, truncation, splices, line edits) or generate noise, and the oracle.
 *
 * The oracle: a parser either throws PagelabError (anything else is a crash), or returns a map whose
 * entries are well typed; that map must then sanitize to a sorted, non-overlapping, merged table, be a
 * fixed point of the sanitizer, and survive page accounting, memblock and every emitter.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { PagelabError } from "../../src/errors.ts";
import { FORMATS, type FormatId } from "../../src/firmware/detect.ts";
import { e820NoMerge } from "../../src/firmware/e820-types.ts";
import { EMIT_FORMATS, emitMap } from "../../src/firmware/emit.ts";
import { usableFrameRanges } from "../../src/firmware/frames.ts";
import { loadBytes } from "../../src/firmware/load.ts";
import { memblockMemory } from "../../src/firmware/memblock.ts";
import { getPreset } from "../../src/firmware/presets.ts";
import { sanitize } from "../../src/firmware/sanitize.ts";
import type { MemoryMap } from "../../src/firmware/types.ts";

const FIX = new URL("../../corpus/", import.meta.url);
const enc = new TextEncoder();
const read = (p: string) => new Uint8Array(readFileSync(new URL(p, FIX)));

function dmesgSeed(): Uint8Array {
  const log = readFileSync(new URL("qemu/numa2-q35-6g.log", FIX), "utf8").split("\n");
  return enc.encode([...log.slice(0, 40), ...log.filter((l) => /SRAT|node +\d:|Memory:/.test(l))].join("\n"));
}

/** One valid input per format (the fuzzer mutates these). */
export function seeds(): Record<FormatId, Uint8Array> {
  const q = getPreset("numa:2x3G");
  const bin = (to: string) => emitMap(q, to).bytes;
  const sysfs = q.entries.map(
    (e, i) =>
      `/sys/firmware/memmap/${i}/start:0x${e.start.toString(16)}\n/sys/firmware/memmap/${i}/end:0x${e.end.toString(16)}\n/sys/firmware/memmap/${i}/type:${e.type === 1 ? "System RAM" : "Reserved"}`,
  );
  const iomem = JSON.parse(readFileSync(new URL("qemu/pc-4g.json", FIX), "utf8")).iomem as string[];
  return {
    dmesg: dmesgSeed(),
    sysfs: enc.encode(sysfs.join("\n")),
    iomem: enc.encode(iomem.join("\n")),
    "e820-bin": bin("e820"),
    multiboot2: bin("multiboot2"),
    limine: read("other-maps/limine-qemu-2G-issue517-partial.txt"),
    "limine-bin": bin("limine"),
    uefi: read("other-maps/uefi-shell-memmap-ovmf-qemu-128M.txt").subarray(0, 3000),
    "uefi-bin": bin("uefi"),
    json: bin("json"),
    yaml: enc.encode(
      "entries:\n  - {start: 0x0, end: 0x9fbff, type: usable}\n  - {start: 0x100000, end: 0x7fffffff, type: usable}\nnodes:\n  - {node: 0, start: 0, end: 0x7fffffff}\n",
    ),
  };
}

type Mutation =
  | { kind: "flip"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "splice"; at: number; len: number; to: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "digit"; at: number; digit: string }
  | { kind: "prefix"; text: string }
  | { kind: "cut"; keep: number };

/** Line prefixes of real logs; '[' first of all (a dmesg is not JSON). */
const PREFIXES = [
  "[",
  "[    0.000000] ",
  "[Sat Dec  5 10:00:00 2026] ",
  "<6>[    0.000000] ",
  "  ",
  "{",
  "[]",
  "\r\n",
];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("splice" as const),
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 96 }),
    to: fc.nat(),
  }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 32 }) }),
  fc.record({
    kind: fc.constant("digit" as const),
    at: fc.nat(),
    digit: fc.constantFrom(..."0123456789abcdefxXfF-: []\n"),
  }),
  // Text that starts with '[' (every dmesg), and binary blobs cut short (a truncated dump).
  fc.record({ kind: fc.constant("prefix" as const), text: fc.constantFrom(...PREFIXES) }),
  fc.record({ kind: fc.constant("cut" as const), keep: fc.integer({ min: 1, max: 128 }) }),
);

function apply(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.length;
  const at = n === 0 || !("at" in m) ? 0 : m.at % n;
  switch (m.kind) {
    case "flip": {
      const out = bytes.slice();
      if (n > 0) out[at] = m.value;
      return out;
    }
    case "truncate":
      return bytes.slice(0, at);
    case "splice": {
      const piece = bytes.slice(at, at + m.len);
      const to = n === 0 ? 0 : m.to % n;
      return new Uint8Array([...bytes.slice(0, to), ...piece, ...bytes.slice(to)]);
    }
    case "insert":
      return new Uint8Array([...bytes.slice(0, at), ...m.bytes, ...bytes.slice(at)]);
    case "prefix": {
      const lines = new TextDecoder().decode(bytes).split("\n");
      return new TextEncoder().encode(lines.map((l) => m.text + l).join("\n"));
    }
    case "cut":
      return bytes.slice(0, Math.min(m.keep, n));
    case "digit": {
      const out = bytes.slice();
      if (n > 0) out[at] = m.digit.charCodeAt(0);
      return out;
    }
  }
}

export interface FuzzCase {
  format: FormatId;
  /** Parse with --format (true) or let detection choose (false). */
  forced: boolean;
  bytes: Uint8Array;
}

/** Mutated seeds (most cases) and pure noise, for every format. */
export function fuzzCase(
  seedBytes: Record<FormatId, Uint8Array>,
  formats: readonly FormatId[] = FORMATS,
): fc.Arbitrary<FuzzCase> {
  const mutated = fc
    .record({
      format: fc.constantFrom(...formats),
      forced: fc.boolean(),
      muts: fc.array(mutation, { minLength: 1, maxLength: 6 }),
    })
    .map(({ format, forced, muts }) => ({ format, forced, bytes: muts.reduce(apply, seedBytes[format]) }));
  const noise = fc.record({
    format: fc.constantFrom(...formats),
    forced: fc.constant(true),
    bytes: fc.oneof(
      fc.uint8Array({ maxLength: 512 }),
      fc.string({ maxLength: 300 }).map((s) => enc.encode(s)),
    ),
  });
  return fc.oneof({ arbitrary: mutated, weight: 4 }, { arbitrary: noise, weight: 1 });
}

/** Throws (a plain Error) if the sanitized map breaks an invariant. */
export function checkSanitized(m: MemoryMap): void {
  for (const [i, e] of m.entries.entries()) {
    if (typeof e.start !== "bigint" || e.start < 0n || e.end < e.start || e.end + 1n >= 1n << 64n)
      throw new Error(`entry ${i} malformed`);
    if (!Number.isInteger(e.type) || e.type <= 0 || e.type > 0xffffffff)
      throw new Error(`entry ${i} type ${e.type}`);
    const prev = m.entries[i - 1];
    if (prev && prev.end >= e.start) throw new Error(`entries ${i - 1}/${i} overlap or are unsorted`);
    if (prev && prev.end + 1n === e.start && prev.type === e.type && !e820NoMerge(e.type))
      throw new Error(`entries ${i - 1}/${i} not merged`);
  }
}

/** Run one case through the oracle: "ok" (valid map) or "rejected" (PagelabError); throws on anything else. */
export function runCase(c: FuzzCase): "ok" | "rejected" {
  let map: MemoryMap;
  try {
    map = loadBytes(c.bytes, { format: c.forced ? c.format : undefined, source: "fuzz" });
  } catch (e) {
    if (e instanceof PagelabError && e.message.length > 0) return "rejected";
    throw e;
  }
  checkSanitized(map);
  const again = sanitize({ ...map, changes: [] });
  if (
    JSON.stringify(again.entries, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) !==
    JSON.stringify(map.entries, (_k, v) => (typeof v === "bigint" ? v.toString() : v))
  ) {
    throw new Error("sanitize is not idempotent");
  }
  for (const r of usableFrameRanges(map))
    if (!(Number.isSafeInteger(r.start) && r.end > r.start)) throw new Error("bad frame range");
  memblockMemory(map);
  for (const to of EMIT_FORMATS) emitMap(map, to);
  return "ok";
}
