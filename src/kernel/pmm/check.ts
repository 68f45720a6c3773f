/**
 * The shared checker that drives any design from outside: it remembers every block it holds and, after
 * each step, verifies what no design may get wrong whatever its internals:
 *
 *   - every handed-out block is aligned to its order, inside usable RAM, disjoint from the reserved
 *     ranges, the standing metadata, the transient metadata frames and every other held block, and it
 *     honours the constraints (address limit, colour);
 *   - free blocks (`forEachFree`) are inside usable RAM and disjoint from all of the above;
 *   - counts add up: free + held + transient metadata frames = managed, and stats agree with the blocks;
 *   - the design's own `check()` passes (its internal invariants).
 *
 * Used by the property tests (test/kernel/pmm) and by `--paranoid` runs. Also: `ramDigest`, a digest
 * of all simulated RAM, to prove that a rejected free left the state unchanged.
 */
import { createHash } from "node:crypto";
import { fail, hex } from "../../errors.ts";
import type { PhysMem } from "../../machine/phys-mem.ts";
import { PAGE } from "./common.ts";
import type { AllocConstraints, FrameAllocator, FrameRange } from "./interface.ts";
import type { BroughtUp } from "./setup.ts";

/** What the auditor needs of a brought-up PMM (setup.ts's `bringUp`, or a booted kernel's). */
export type AuditTarget = Pick<BroughtUp, "alloc" | "mem" | "layout" | "metadata" | "reserved">;

function audit(message: string, details: Record<string, unknown> = {}): never {
  return fail("PMM_AUDIT", message, details);
}

export class PmmAuditor {
  /** Held blocks: first frame -> order. */
  readonly held = new Map<number, number>();
  heldFrames = 0;
  private readonly a: FrameAllocator;
  private readonly usable: FrameRange[];
  private readonly forbidden: FrameRange[];
  private readonly colours: number;

  constructor(private readonly up: AuditTarget) {
    this.a = up.alloc;
    this.usable = up.layout.usable;
    this.forbidden = [...up.reserved, up.metadata].filter((r) => r.end > r.start);
    this.colours = up.layout.colours ?? 1;
  }

  private inUsable(start: number, end: number): boolean {
    for (const r of this.usable) if (start >= r.start && end <= r.end) return true;
    return false;
  }

  /** Verify a block just returned by alloc(order, c) and start holding it. */
  onAlloc(pfn: number, order: number, c?: AllocConstraints): void {
    const n = 2 ** order;
    const name = this.a.name;
    if (!Number.isInteger(pfn) || pfn < 0) audit(`${name}: alloc returned ${pfn}`);
    if (pfn % n !== 0) audit(`${name}: block ${hex(pfn)} of order ${order} is not naturally aligned`);
    if (!this.inUsable(pfn, pfn + n)) audit(`${name}: block ${hex(pfn)}+${n} is not inside usable RAM`);
    for (const f of this.forbidden) {
      if (pfn < f.end && pfn + n > f.start)
        audit(`${name}: block ${hex(pfn)}+${n} overlaps reserved/metadata ${hex(f.start)}`);
    }
    for (const [h, o] of this.held) {
      if (pfn < h + 2 ** o && pfn + n > h)
        audit(`${name}: block ${hex(pfn)}+${n} overlaps held block ${hex(h)}+${2 ** o}`);
    }
    this.a.forEachMetaFrame?.((m) => {
      if (m >= pfn && m < pfn + n) audit(`${name}: block ${hex(pfn)} contains metadata frame ${hex(m)}`);
    });
    if (c?.maxAddr !== undefined && (pfn + n) * PAGE > c.maxAddr)
      audit(`${name}: block ${hex(pfn)} beyond maxAddr ${hex(c.maxAddr)}`);
    if (c?.colour !== undefined && pfn % this.colours !== c.colour)
      audit(`${name}: block ${hex(pfn)} has the wrong colour`);
    this.held.set(pfn, order);
    this.heldFrames += n;
  }

  /** Count frames the caller already holds (a booted kernel's page tables), without checking them. */
  holdAlready(pfn: number, order: number): void {
    this.held.set(pfn, order);
    this.heldFrames += 2 ** order;
  }

  /** Stop holding a block that was just freed. */
  onFree(pfn: number): void {
    const o = this.held.get(pfn);
    if (o === undefined) audit(`auditor: ${hex(pfn)} is not held`);
    this.held.delete(pfn);
    this.heldFrames -= 2 ** o;
  }

  /** The full check: design invariants, disjointness of everything, conservation of frames. */
  full(): void {
    const a = this.a;
    a.check();
    const iv: number[][] = [];
    let free = 0;
    a.forEachFree!((p, n) => {
      iv.push([p, p + n, 0]);
      free += n;
    });
    let meta = 0;
    a.forEachMetaFrame?.((p) => {
      iv.push([p, p + 1, 1]);
      meta++;
    });
    for (const [p, o] of this.held) iv.push([p, p + 2 ** o, 2]);
    for (const [s, e] of iv)
      if (!this.inUsable(s, e)) audit(`${a.name}: block ${hex(s)}..${hex(e)} is outside usable RAM`);
    for (const f of this.forbidden) iv.push([f.start, f.end, 3]);
    iv.sort((x, y) => x[0] - y[0]);
    const kinds = ["free", "metadata", "held", "reserved"];
    for (let i = 1; i < iv.length; i++) {
      if (iv[i][0] < iv[i - 1][1]) {
        audit(
          `${a.name}: ${kinds[iv[i - 1][2]]} ${hex(iv[i - 1][0])}..${hex(iv[i - 1][1])} overlaps ${kinds[iv[i][2]]} ${hex(iv[i][0])}`,
        );
      }
    }
    const st = a.stats();
    if (st.freeFrames !== free)
      audit(`${a.name}: stats say ${st.freeFrames} free frames, blocks hold ${free}`);
    if (free + this.heldFrames + meta !== st.managedFrames) {
      audit(
        `${a.name}: free ${free} + held ${this.heldFrames} + metadata ${meta} != managed ${st.managedFrames}`,
      );
    }
    const c = a.counts?.();
    if (c !== undefined) {
      for (const k of ["managedFrames", "freeFrames", "metadataBytes", "transientBytes"] as const)
        if (c[k] !== st[k]) audit(`${a.name}: counts() says ${k} ${c[k]}, stats() ${st[k]}`);
    }
    let byOrder = 0;
    for (let o = 0; o < st.freeByOrder.length; o++) byOrder += st.freeByOrder[o] * 2 ** o;
    if (byOrder !== free) {
      audit(`${a.name}: freeByOrder covers ${byOrder} frames, ${free} are free`);
    }
  }

  /** Everything needed to prove "state unchanged": stats, dump, and a digest of all RAM. */
  snapshot(): string {
    return `${JSON.stringify(this.a.stats())}\n${this.a.dump?.() ?? ""}\n${ramDigest(this.up.mem)}`;
  }
}

/** SHA-1 of every backed chunk of simulated RAM (with its address), for before/after comparisons. */
export function ramDigest(mem: PhysMem): string {
  const h = createHash("sha1");
  const bulk = mem.counters.memBulkBytes;
  for (const pa of mem.backedChunks()) {
    h.update(String(pa));
    h.update(mem.readBytes(pa, 0x200000));
  }
  mem.counters.memBulkBytes = bulk;
  return h.digest("hex");
}
