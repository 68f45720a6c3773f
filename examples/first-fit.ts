/**
 * A first-fit bitmap frame allocator in about 60 lines: the worked example of README "Bring your own
 * allocator". Two bitmaps over every usable range, kept in simulated RAM at the metadata address the
 * kernel gives it and touched only through `env.port`: `used` (1 = not free) and `managed` (1 = given
 * by addFree, so reserved frames inside a range can never be freed). First fit from the bottom.
 *
 *   npx pagelab boot --pmm ./examples/first-fit.ts
 */
import {
  type FrameAllocator,
  fail,
  type PmmDesign,
  type PmmEnv,
  type PmmLayout,
  type PmmStats,
  statsFromFree,
} from "pagelab";

const framesOf = (l: PmmLayout) => l.usable.reduce((s, r) => s + r.end - r.start, 0);
const bitmapBytes = (l: PmmLayout) => Math.ceil(framesOf(l) / 32) * 4;
const bytesOf = (l: PmmLayout) => 2 * bitmapBytes(l); // used[] then managed[]

class FirstFit implements FrameAllocator {
  readonly name = "first-fit";
  private managed = 0;

  constructor(
    private readonly env: PmmEnv,
    private readonly layout: PmmLayout,
    private readonly meta: number,
  ) {
    for (let o = 0; o < bitmapBytes(layout); o += 4) env.port.write32(meta + o, 0xffffffff); // all used
    for (let o = 0; o < bitmapBytes(layout); o += 4) env.port.write32(meta + bitmapBytes(layout) + o, 0); // none managed
  }

  /** Bit index of frame `pfn` (frames of all usable ranges, in order), or -1 outside usable RAM. */
  private bit(pfn: number): number {
    let base = 0;
    for (const r of this.layout.usable) {
      if (pfn >= r.start && pfn < r.end) return base + pfn - r.start;
      base += r.end - r.start;
    }
    return -1;
  }

  private get(map: number, i: number): boolean {
    return ((this.env.port.read32(this.meta + map + (i >>> 5) * 4) >>> (i & 31)) & 1) === 1;
  }

  private put(map: number, i: number, one: boolean): void {
    const pa = this.meta + map + (i >>> 5) * 4;
    const w = this.env.port.read32(pa);
    this.env.port.write32(pa, (one ? w | (1 << (i & 31)) : w & ~(1 << (i & 31))) >>> 0);
  }

  private used(i: number): boolean {
    return this.get(0, i);
  }

  private mark(i: number, used: boolean): void {
    this.put(0, i, used);
  }

  addFree(start: number, count: number): void {
    for (let p = start; p < start + count; p++) {
      this.mark(this.bit(p), false);
      this.put(bitmapBytes(this.layout), this.bit(p), true);
    }
    this.managed += count;
  }

  alloc(order: number): number {
    if (order !== 0) return -1; // single frames only
    for (let i = 0; i < framesOf(this.layout); i++) {
      if (!this.used(i)) {
        this.mark(i, true);
        return this.frame(i);
      }
    }
    return -1;
  }

  free(pfn: number, order: number): void {
    const i = this.bit(pfn);
    if (order !== 0) fail("WRONG_ORDER", `first-fit: order ${order} was never handed out`);
    if (i < 0 || !this.get(bitmapBytes(this.layout), i))
      fail("BAD_FREE", `first-fit: frame ${pfn} was never given to the allocator`);
    if (!this.used(i)) fail("DOUBLE_FREE", `first-fit: frame ${pfn} is already free`);
    this.mark(i, false);
  }

  private frame(i: number): number {
    for (const r of this.layout.usable) {
      if (i < r.end - r.start) return r.start + i;
      i -= r.end - r.start;
    }
    return -1;
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    for (let i = 0; i < framesOf(this.layout); i++) if (!this.used(i)) fn(this.frame(i), 1);
  }

  stats(): PmmStats {
    return statsFromFree(this, this.layout, this.managed, bytesOf(this.layout), 0);
  }

  check(): void {} // the bitmap is the whole state: nothing can disagree with it
}

const design: PmmDesign = {
  name: "first-fit",
  summary: "one bit per frame, first fit from the bottom: simple, O(frames) per allocation",
  metadataBytes: bytesOf,
  create: (env, layout, meta) => new FirstFit(env, layout, meta),
};
export default design;
