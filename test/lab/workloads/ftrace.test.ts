import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseTraceLine, readLines } from "../../../src/lab/workloads/ftrace.ts";
import { ftraceReplay } from "../../../src/lab/workloads/ftrace-replay.ts";
import { runWorkload } from "./helpers.ts";

const SAMPLE = fileURLToPath(new URL("../../fixtures/traces/kmem-sample.trace", import.meta.url));

describe("ftrace parser", () => {
  it("reads the four events in today's format (kmem.h TP_printk)", () => {
    expect(
      parseTraceLine(
        "            bash-2210    [001] ..... 10432.518230: mm_page_alloc: page=00000000a1b2c3d4 pfn=0x10574b order=2 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP",
        5,
      ),
    ).toEqual({ kind: "page_alloc", line: 5, cpu: 1, pfn: 0x10574b, order: 2, migratetype: 1 });
    expect(
      parseTraceLine(
        "  kworker/u8:3-187     [000] d..1. 12.000001: mm_page_free: page=00000000a1b2c3d4 pfn=0x10574b order=2",
        6,
      ),
    ).toEqual({ kind: "page_free", line: 6, cpu: 0, pfn: 0x10574b, order: 2 });
    expect(
      parseTraceLine(
        "             cat-2291    [003] ..... 5123.404391: kmalloc: call_site=load_elf_phdrs+0x4a/0xb0 ptr=00000000e5a3863e bytes_req=504 bytes_alloc=512 gfp_flags=GFP_KERNEL node=-1 accounted=false",
        7,
      ),
    ).toEqual({ kind: "kmalloc", line: 7, cpu: 3, ptr: "e5a3863e", bytesReq: 504, bytesAlloc: 512 });
    expect(
      parseTraceLine(
        "             cat-2291    [001] ..... 5123.404280: kfree: call_site=kernfs_fop_release+0x5a/0xa0 ptr=ffff888100a3b400",
        8,
      ),
    ).toEqual({ kind: "kfree", line: 8, cpu: 1, ptr: "ffff888100a3b400" });
  });

  it("reads older formats: decimal pfn, hex call_site, no flags column, a tgid column", () => {
    expect(
      parseTraceLine(
        "          <idle>-0     [002]  1234.5: mm_page_free: page=ffffea0000c1c400 pfn=201233 order=0",
        1,
      ),
    ).toMatchObject({ kind: "page_free", cpu: 2, pfn: 201233, order: 0 });
    expect(
      parseTraceLine(
        "            sshd-870   (  870) [000] .... 99.1: kmalloc: call_site=ffffffff811c2d3e ptr=ffff88003c1f2a00 bytes_req=24 bytes_alloc=32 gfp_flags=GFP_KERNEL",
        2,
      ),
    ).toMatchObject({ kind: "kmalloc", cpu: 0, bytesReq: 24 });
  });

  it("skips header and blank lines; reports bad lines with their line numbers and reasons", () => {
    expect(parseTraceLine("# tracer: nop", 1)).toBeNull();
    expect(parseTraceLine("   ", 2)).toBeNull();
    const bad: [string, RegExp][] = [
      ["garbage here", /not a trace line/],
      ["CPU:2 [LOST 45 EVENTS]", /lost 45 events/],
      [
        "            bash-2210    [001] ..... 1.5: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE",
        /failed in the traced kernel/,
      ],
      [
        "            bash-2210    [001] ..... 1.5: mm_page_alloc: page=00000000a1b2c3d4 pfn=0xzz order=0 migratetype=1",
        /without valid/,
      ],
      [
        "            bash-2210    [001] ..... 1.5: mm_page_free: page=00000000a1b2c3d4 pfn=0x1000 order=40",
        /order \(0\.\.18\)/,
      ],
      [
        "            bash-2210    [001] ..... 1.5: kmalloc: call_site=x ptr=nothex bytes_req=8 bytes_alloc=8",
        /kmalloc without valid/,
      ],
      [
        "            bash-2210    [001] ..... 1.5: kmem_cache_alloc: call_site=x ptr=0000000012345678 name=names_cache",
        /event kmem_cache_alloc is not replayed/,
      ],
    ];
    bad.forEach(([text, why], i) => {
      const p = parseTraceLine(text, 100 + i);
      expect(p, text).toMatchObject({ kind: "problem", line: 100 + i });
      expect((p as { reason: string }).reason, text).toMatch(why);
    });
  });

  it("reads a file line by line with 1-based numbers, CRLF or not", () => {
    const dir = mkdtempSync(join(tmpdir(), "pagelab-trace-"));
    const f = join(dir, "t.trace");
    writeFileSync(f, "a\r\nb\n\nc");
    expect([...readLines(f)]).toEqual([
      ["a", 1],
      ["b", 2],
      ["", 3],
      ["c", 4],
    ]);
    expect(() => [...readLines(join(dir, "missing"))]).toThrow(/cannot read trace file/);
  });

  it("parses every line of the sample fixture into events or reasoned problems", () => {
    let events = 0;
    const reasons = new Set<string>();
    for (const [text, n] of readLines(SAMPLE)) {
      const e = parseTraceLine(text, n);
      if (e === null) continue;
      if (e.kind === "problem") reasons.add(e.reason);
      else events++;
    }
    expect(events).toBeGreaterThan(50);
    expect([...reasons]).toEqual([expect.stringMatching(/kmem_cache_alloc is not replayed/)]);
  });
});

describe("ftrace replay", () => {
  const pageOnly = () => {
    const dir = mkdtempSync(join(tmpdir(), "pagelab-trace-"));
    const f = join(dir, "pages.trace");
    const lines = [
      "# tracer: nop",
      "  systemd-journal-391     [003] ..... 5123.401142: mm_page_free: page=00000000269e0d37 pfn=0x1033f1 order=0",
      "     ksoftirqd/2-24      [002] ..s1. 5123.401241: mm_page_alloc: page=000000008d116ece pfn=0x10fce0 order=3 migratetype=0 gfp_flags=GFP_ATOMIC|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP",
      "            bash-2210    [001] ..... 5123.401300: mm_page_alloc: page=00000000aaaa0001 pfn=0x10a001 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP",
      "            bash-2210    [001] ..... 5123.401301: mm_page_alloc: page=00000000aaaa0002 pfn=0x10a002 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP",
      "             cat-2291    [001] ..... 5123.401350: mm_page_free: page=000000008d116ece pfn=0x10fce0 order=3",
      "this line is broken",
      "             cat-2291    [000] ..... 5123.401351: mm_page_free: page=00000000aaaa0001 pfn=0x10a001 order=0",
    ];
    writeFileSync(f, `${lines.join("\n")}\n`);
    return f;
  };

  it("maps trace pfns to simulated blocks, frees through the map, reports unusable lines by number", () => {
    const trace = pageOnly();
    const a = runWorkload(ftraceReplay, { ops: 10, trace });
    const b = runWorkload(ftraceReplay, { ops: 10, trace });
    expect(a.counters).toEqual(b.counters);
    expect(a.res.ops).toMatchObject({ alloc: 3, free: 2 });
    expect(a.res.info).toMatchObject({
      traceLines: 8,
      eventsReplayed: 5,
      linesSkipped: 2,
      liveBlocksAtEnd: 1,
    });
    expect(a.res.notes).toContain(
      "line 2: mm_page_free of a block the trace never allocated (allocated before the capture)",
    );
    expect(a.res.notes.some((n) => n.startsWith("line 7: not a trace line"))).toBe(true);
    const d = runWorkload(ftraceReplay, { ops: 10, trace, drain: true });
    d.k.pmm.check();
    expect(d.k.pmm.stats().freeFrames).toBe(d.freeBefore);
  });

  it("refuses to run without a trace", () => {
    expect(() => runWorkload(ftraceReplay, { ops: 10 })).toThrow(/needs a trace/);
  });

  it("replays the sample fixture, kmalloc and kfree included", () => {
    const r = runWorkload(ftraceReplay, { ops: 10, trace: SAMPLE, drain: true });
    expect(r.res.ops.kmalloc).toBeGreaterThan(10);
    expect(r.res.info.nullKfree).toBe(1);
    r.k.check();
    const heap = r.k.heap.stats();
    expect(heap.caches.every((c) => c.activeObjs === 0)).toBe(true);
    // empty slabs the caches keep (min_partial) are the only frames not back in the PMM
    expect(r.k.pmm.stats().freeFrames + heap.slabPages).toBe(r.freeBefore);
  });
});
