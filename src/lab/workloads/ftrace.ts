/**
 * Parser for Linux ftrace text output (`/sys/kernel/tracing/trace_pipe` or `trace`) of the kmem events
 * pagelab replays. Formats, from include/trace/events/kmem.h (TP_printk):
 *
 *   mm_page_alloc:  page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s
 *   mm_page_free:   page=%p pfn=0x%lx order=%d
 *   mm_page_free_batched: page=%p pfn=0x%lx order=0
 *   kmalloc:        call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d accounted=%s
 *   kfree:          call_site=%pS ptr=%p
 *
 * Older kernels print `pfn=%lu` (decimal), `call_site=%lx`, and kmalloc without `node`/`accounted`;
 * both are accepted. A failed page allocation prints a NULL page (`page=0000000000000000 pfn=0x0`, or
 * `page=(null)` on old kernels). Pointers are hashed by `%p` unless the kernel booted with
 * `no_hash_pointers`; hashing is stable within a boot, so hashed values still pair a kfree with its
 * kmalloc.
 *
 * Each line is `TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS`; with the `record-tgid` option a
 * `(TGID)` sits before `[CPU]`, and with `irq-info` off the flags column is absent. `#` lines (the
 * header of the `trace` file) and blank lines are skipped silently. Anything else that cannot be used
 * becomes a `TraceProblem` with its line number and the reason.
 *
 * To capture a trace on your own machine (as root):
 *
 *     cd /sys/kernel/tracing
 *     echo 1 > events/kmem/mm_page_alloc/enable; echo 1 > events/kmem/mm_page_free/enable
 *     echo 1 > events/kmem/kmalloc/enable;       echo 1 > events/kmem/kfree/enable
 *     cat trace_pipe > ~/kmem.trace     # Ctrl-C after a few seconds
 */
import { closeSync, openSync, readSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { fail } from "../../errors.ts";

export type TraceEvent =
  | { kind: "page_alloc"; line: number; cpu: number; pfn: number; order: number; migratetype: number }
  | { kind: "page_free"; line: number; cpu: number; pfn: number; order: number }
  | { kind: "kmalloc"; line: number; cpu: number; ptr: string; bytesReq: number; bytesAlloc: number }
  | { kind: "kfree"; line: number; cpu: number; ptr: string };

export interface TraceProblem {
  kind: "problem";
  line: number;
  /** Short reason, stable enough to group by (e.g. "not a trace line", "event kmem_cache_alloc is not replayed"). */
  reason: string;
  /** The line, cut to 160 characters. */
  text: string;
}

export const REPLAYED_EVENTS = ["mm_page_alloc", "mm_page_free", "mm_page_free_batched", "kmalloc", "kfree"];

const LINE =
  /^\s*(.*?)-(\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(\d+)\]\s+(?:[^\s]{4,6}\s+)?(\d+\.\d+):\s+([A-Za-z_][\w]*):\s*(.*)$/;
const LOST = /^CPU:\d+ \[LOST (\d+) EVENTS\]/;

function problem(line: number, text: string, reason: string): TraceProblem {
  return { kind: "problem", line, reason, text: text.length > 160 ? `${text.slice(0, 157)}...` : text };
}

/** `key=value` fields separated by spaces (values never contain spaces in these events). */
function fields(s: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of s.trim().split(/\s+/)) {
    const eq = part.indexOf("=");
    if (eq > 0) m.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return m;
}

/** A number printed as 0x%lx (modern) or %lu (older): -1 when malformed. */
function num(v: string | undefined): number {
  if (v === undefined) return -1;
  const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v.slice(2), 16) : /^\d+$/.test(v) ? Number(v) : -1;
  return Number.isSafeInteger(n) ? n : -1;
}

function isNullPtr(v: string): boolean {
  return v === "(null)" || /^0+$/.test(v);
}

function ptrOf(v: string | undefined): string | null {
  if (v === undefined) return null;
  const t = v.toLowerCase().replace(/^0x/, "");
  if (v === "(null)") return "0";
  return /^[0-9a-f]{1,16}$/.test(t) ? t.replace(/^0+(?=.)/, "") : null;
}

/**
 * Parse one line. Returns an event, a problem, or null for lines that carry nothing (blank, `#`
 * header lines).
 */
export function parseTraceLine(text: string, lineNo: number): TraceEvent | TraceProblem | null {
  const t = text.trimEnd();
  if (t.trim() === "" || t.trimStart().startsWith("#")) return null;
  const lost = LOST.exec(t.trim());
  if (lost) return problem(lineNo, t, `the kernel lost ${lost[1]} events here (trace buffer overrun)`);
  const m = LINE.exec(t);
  if (m === null)
    return problem(lineNo, t, "not a trace line (expected TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS)");
  const cpu = Number(m[3]);
  const event = m[5];
  const f = fields(m[6]);
  switch (event) {
    case "mm_page_alloc": {
      const pfn = num(f.get("pfn"));
      const order = num(f.get("order"));
      const mt = num(f.get("migratetype"));
      const page = f.get("page");
      if (page === undefined || pfn < 0 || order < 0 || order > 18 || mt < 0)
        return problem(lineNo, t, "mm_page_alloc without valid page, pfn, order (0..18) and migratetype");
      if (isNullPtr(page))
        return problem(lineNo, t, "the allocation failed in the traced kernel (page=NULL)");
      return { kind: "page_alloc", line: lineNo, cpu, pfn, order, migratetype: mt };
    }
    case "mm_page_free":
    case "mm_page_free_batched": {
      const pfn = num(f.get("pfn"));
      const order = num(f.get("order"));
      if (pfn < 0 || order < 0 || order > 18)
        return problem(lineNo, t, `${event} without valid pfn and order (0..18)`);
      return { kind: "page_free", line: lineNo, cpu, pfn, order };
    }
    case "kmalloc": {
      const ptr = ptrOf(f.get("ptr"));
      const req = num(f.get("bytes_req"));
      const got = num(f.get("bytes_alloc"));
      if (ptr === null || req < 0 || got < 0)
        return problem(lineNo, t, "kmalloc without valid ptr, bytes_req and bytes_alloc");
      if (ptr === "0") return problem(lineNo, t, "the allocation failed in the traced kernel (ptr=NULL)");
      return { kind: "kmalloc", line: lineNo, cpu, ptr, bytesReq: req, bytesAlloc: got };
    }
    case "kfree": {
      const ptr = ptrOf(f.get("ptr"));
      if (ptr === null) return problem(lineNo, t, "kfree without a valid ptr");
      return { kind: "kfree", line: lineNo, cpu, ptr };
    }
    default:
      return problem(lineNo, t, `event ${event} is not replayed (only ${REPLAYED_EVENTS.join(", ")})`);
  }
}

/**
 * The lines of a file, read in 1 MiB chunks (memory stays bounded however long the trace), with
 * 1-based line numbers. Synchronous, so a workload can replay while it reads.
 */
export function* readLines(path: string): Generator<[string, number]> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    fail("TRACE_FILE", `cannot read trace file ${path}: ${(e as Error).message}`);
  }
  const buf = Buffer.alloc(1 << 20);
  const dec = new StringDecoder("utf8");
  let rest = "";
  let n = 0;
  try {
    for (;;) {
      const got = readSync(fd, buf, 0, buf.length, null);
      if (got === 0) break;
      const text = rest + dec.write(buf.subarray(0, got));
      const parts = text.split("\n");
      rest = parts.pop() ?? "";
      for (const p of parts) yield [p.endsWith("\r") ? p.slice(0, -1) : p, ++n];
    }
    rest += dec.end();
    if (rest !== "") yield [rest, ++n];
  } finally {
    closeSync(fd);
  }
}
