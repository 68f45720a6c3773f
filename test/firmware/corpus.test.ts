/**
 * The real-machine corpus (244 maps Linux printed, with what it concluded): every map parses, is
 * already a fixed point of the sanitizer (Linux sanitized it before printing), round-trips through every
 * emitter, and, where the record holds the log lines needed, memblock.memory is rebuilt exactly as
 * Linux printed it in `Early memory node ranges`.
 *
 * Reproduction (`npx vitest run test/firmware/corpus.test.ts`, printed below): 222 of the 225 records
 * with node ranges. The 19 records without `Early memory node ranges` cannot be checked. The 3 others:
 *   - ml-linux-nfs-fb2305f014-0, ml-linux-pci-1edc114d45-0: the quoted table stops early (Linux's node
 *     ranges include RAM above 4 GiB that no table line in the excerpt describes);
 *   - ml-linux-next-2edb5e1937-0: node 1's memory has no SRAT memory-affinity line in the excerpt
 *     (only node 0's are quoted), so its node boundary cannot be known.
 */
import { describe, expect, it } from "vitest";
import { parseDmesg } from "../../src/firmware/dmesg.ts";
import { E820, e820TypeName } from "../../src/firmware/e820-types.ts";
import { EMIT_FORMATS, emitMap } from "../../src/firmware/emit.ts";
import { usableFrameRanges } from "../../src/firmware/frames.ts";
import { loadBytes } from "../../src/firmware/load.ts";
import { formatNodeRange, memblockMemory } from "../../src/firmware/memblock.ts";
import { sanitize } from "../../src/firmware/sanitize.ts";
import type { MapEntry, MemoryMap } from "../../src/firmware/types.ts";
import { loadRecords, recordToLog } from "./corpus.ts";

const records = loadRecords();
const MIN_REPRODUCED = 222;

/** What a target format can say: Multiboot2/Limine know types 1-5 only, the rest read back as reserved. */
function expressible(entries: readonly MapEntry[], to: string): MapEntry[] {
  if (to !== "multiboot2" && to !== "limine") return entries.map((e) => ({ ...e }));
  const known = [E820.RAM, E820.RESERVED, E820.ACPI, E820.NVS, E820.UNUSABLE] as number[];
  return entries.map((e) => ({ ...e, type: known.includes(e.type) ? e.type : E820.RESERVED }));
}

const clean = (entries: MapEntry[]): MemoryMap => sanitize({ format: "x", entries, changes: [] });

describe("corpus: 244 real firmware maps", () => {
  it("has the records the fixtures promise", () => {
    expect(records.length).toBe(244);
  });

  it("every table parses from its dmesg lines to exactly the recorded entries", () => {
    for (const r of records) {
      const map = parseDmesg(r.e820_raw.join("\n"), r.id);
      const got = map.entries.map((e) => [
        `0x${e.start.toString(16).padStart(16, "0")}`,
        `0x${e.end.toString(16).padStart(16, "0")}`,
        e820TypeName(e.type),
      ]);
      const want = r.e820.map((e) => [
        e.start,
        e.end,
        e.type.replace(/^System RAM$/, "usable").replace(/^device reserved$/, "reserved"),
      ]);
      expect(got, r.id).toEqual(want);
    }
  });

  it("the sanitizer leaves every (Linux-sanitized) table unchanged, reports nothing, and is idempotent", () => {
    for (const r of records) {
      const map = parseDmesg(r.e820_raw.join("\n"), r.id);
      const once = sanitize(map);
      expect(once.entries, r.id).toEqual(map.entries);
      expect(
        once.changes.map((c) => c.message),
        r.id,
      ).toEqual([]);
      expect(sanitize({ ...once, changes: [] }).entries, r.id).toEqual(once.entries);
    }
  });

  it("every map round-trips through every emitter and back", () => {
    for (const r of records) {
      const map = sanitize(parseDmesg(r.e820_raw.join("\n"), r.id));
      for (const to of EMIT_FORMATS) {
        const out = emitMap(map, to);
        const back = loadBytes(out.bytes, { source: `${r.id}.${to}` });
        expect(back.format.replace(/-bin$/, ""), `${r.id} ${to}`).toBe(out.readBack.replace(/-bin$/, ""));
        if (to === "uefi") {
          // EFI counts whole pages: compare the usable frames, which is what survives page rounding.
          expect(usableFrameRanges(back), `${r.id} ${to}`).toEqual(usableFrameRanges(map));
        } else {
          expect(back.entries, `${r.id} ${to}`).toEqual(clean(expressible(map.entries, to)).entries);
        }
      }
    }
  });

  it(`rebuilds Linux's Early memory node ranges for at least ${MIN_REPRODUCED} records`, () => {
    const failures: string[] = [];
    let withRanges = 0;
    let reproduced = 0;
    let memoryChecked = 0;
    for (const r of records) {
      if (r.node_ranges.length === 0) continue;
      withRanges++;
      const map = parseDmesg(recordToLog(r), r.id);
      const mb = memblockMemory(map);
      const want = map.log?.nodeRanges.map(formatNodeRange) ?? [];
      if (JSON.stringify(mb.ranges.map(formatNodeRange)) !== JSON.stringify(want)) {
        failures.push(r.id);
        continue;
      }
      reproduced++;
      if (map.log?.memoryTotalKiB !== undefined && /K\/\d+K available/.test(r.memory_line ?? "")) {
        expect(mb.presentPages * 4, `${r.id} Memory: B`).toBe(map.log.memoryTotalKiB);
        memoryChecked++;
      }
    }
    console.log(
      `node ranges: ${reproduced}/${withRanges} records reproduced (${records.length - withRanges} have none); ` +
        `'Memory: A/BK' B equals present pages in ${memoryChecked}; not reproduced: ${failures.join(", ")}`,
    );
    expect(withRanges).toBe(225);
    expect(reproduced).toBeGreaterThanOrEqual(MIN_REPRODUCED);
    expect(memoryChecked).toBeGreaterThan(150);
  });
});
