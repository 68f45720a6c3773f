/**
 * Design 6 (part 1): compositions of the designs above, as a kernel stacks its policies on its
 * mechanisms (Zircon's arena/node split, Linux's node -> zone -> free area):
 *
 *   - `zonedDesign(inner)`: Linux's zones, one `inner` instance each: DMA (< 16 MiB), DMA32 (< 4 GiB),
 *     Normal. An allocation tries the highest zone its address limit allows, then falls back downward
 *     (Normal -> DMA32 -> DMA), like a zonelist;
 *   - `numaDesign(inner)`: one `inner` instance per NUMA node (from `FrameRange.node`); an allocation
 *     tries the preferred node (`c.node`, default 0), then the others by distance |i - node|;
 *   - `colourStacksDesign()`: one linked-stack-pages instance per cache colour (pfn % colours), so a
 *     request for a colour is O(1); uncoloured requests rotate over the colours. One shared 1-bit
 *     allocation map catches bad frees.
 *
 * Each part's standing metadata is a page-aligned slice of the composition's block, in part order.
 * The composition keeps only registers: part bounds and a rotation index.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { stackHostBytes } from "./common.ts";
import { hex } from "../../errors.ts";
import { buddyDesign } from "./buddy.ts";
import {
  AllocMap,
  allocFramesVia,
  badFree,
  checkFreeArgs,
  checkOrder0Free,
  checkLayout,
  cutRanges,
  effectiveOrder,
  invariant,
  NR_ORDERS,
  pageRound,
  RegionTable,
  statsFromFree,
} from "./common.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmStats,
} from "./interface.ts";
import { StackPages } from "./stack-pages.ts";

/** Zone boundaries in frames. */
export const ZONE_DMA_END = 0x1000; // 16 MiB
export const ZONE_DMA32_END = 0x100000; // 4 GiB

/** Makes the design of one part, given its label (zone name) and node. */
export type PartFactory = (label: string, node: number) => PmmDesign;

interface PartSpec {
  label: string;
  node: number;
  layout: PmmLayout;
  design: PmmDesign;
}

type Split = (layout: PmmLayout, make: PartFactory) => PartSpec[];

const splitZones: Split = (layout, make) => {
  const node = layout.usable[0]?.node ?? 0;
  const zones: [string, number, number][] = [
    ["DMA", 0, ZONE_DMA_END],
    ["DMA32", ZONE_DMA_END, ZONE_DMA32_END],
    ["Normal", ZONE_DMA32_END, Number.MAX_SAFE_INTEGER],
  ];
  const out: PartSpec[] = [];
  for (const [label, lo, hi] of zones) {
    const usable = cutRanges(layout.usable, lo, hi);
    if (usable.length > 0)
      out.push({ label, node, layout: { ...layout, usable }, design: make(label, node) });
  }
  return out;
};

const splitNodes: Split = (layout, make) => {
  const nodes = [...new Set(layout.usable.map((r) => r.node ?? 0))].sort((a, b) => a - b);
  return nodes.map((node) => ({
    label: `node${node}`,
    node,
    layout: { ...layout, usable: layout.usable.filter((r) => (r.node ?? 0) === node) },
    design: make("Normal", node),
  }));
};

function partitioned(
  name: string,
  summary: string,
  kind: "zone" | "node",
  split: Split,
  make: PartFactory,
): PmmDesign {
  const sizes = (layout: PmmLayout) =>
    split(layout, make).map((p) => pageRound(p.design.metadataBytes(p.layout)));
  return {
    name,
    summary,
    metadataBytes: (layout) => sizes(layout).reduce((a, b) => a + b, 0),
    create: (env, layout, metadataPa) => {
      checkLayout(layout);
      const specs = split(layout, make);
      const parts: FrameAllocator[] = [];
      let pa = metadataPa;
      for (const s of specs) {
        parts.push(s.design.create(env, s.layout, pa));
        pa += pageRound(s.design.metadataBytes(s.layout));
      }
      return new Partitioned(name, kind, layout, specs, parts, pa - metadataPa);
    },
  };
}

export function zonedDesign(
  make: PartFactory = (zone, node) => buddyDesign({ zone, node, name: `buddy:${zone}` }),
): PmmDesign {
  return partitioned(
    "zoned-buddy",
    "Linux zones DMA (<16 MiB), DMA32 (<4 GiB), Normal, one buddy each; requests fall back Normal -> DMA32 -> DMA " +
      "within their address limit.",
    "zone",
    splitZones,
    make,
  );
}

export function numaDesign(make: PartFactory = (_z, node) => zonedForNode(node)): PmmDesign {
  return partitioned(
    "numa-buddy",
    "One zoned buddy per NUMA node; requests try the preferred node, then the others by distance.",
    "node",
    splitNodes,
    make,
  );
}

function zonedForNode(node: number): PmmDesign {
  return zonedDesign((zone) => buddyDesign({ zone, node, name: `buddy:n${node}:${zone}` }));
}

export class Partitioned implements FrameAllocator {
  readonly maxOrder: number;
  /** Registers: the routing table (part bounds) of the composition. */
  private readonly routeStart: number[] = [];
  private readonly routeEnd: number[] = [];
  private readonly routePart: number[] = [];
  private readonly lowest: number[];
  private readonly nodes: number[];
  private readonly labels: string[];

  constructor(
    readonly name: string,
    private readonly kind: "zone" | "node",
    private readonly layout: PmmLayout,
    specs: PartSpec[],
    readonly parts: FrameAllocator[],
    private readonly metaBytes: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    const routes: [number, number, number][] = [];
    specs.forEach((s, i) => {
      for (const r of s.layout.usable) routes.push([r.start, r.end, i]);
    });
    routes.sort((a, b) => a[0] - b[0]);
    for (const [s, e, p] of routes) {
      this.routeStart.push(s);
      this.routeEnd.push(e);
      this.routePart.push(p);
    }
    this.lowest = specs.map((s) => s.layout.usable[0].start);
    this.nodes = specs.map((s) => s.node);
    this.labels = specs.map((s) => s.label);
    this.maxOrder = Math.max(...parts.map((p) => p.maxOrder ?? 0));
  }

  private partOf(pfn: number): number {
    let lo = 0;
    let hi = this.routeStart.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (pfn < this.routeStart[mid]) hi = mid - 1;
      else if (pfn >= this.routeEnd[mid]) lo = mid + 1;
      else return this.routePart[mid];
    }
    return -1;
  }

  addFree(startPfn: number, count: number): void {
    const end = startPfn + count;
    for (let p = startPfn; p < end; ) {
      const i = this.partOf(p);
      if (i < 0) badFree("BAD_FREE", this.name, p, 0, "addFree outside the usable RAM of the layout");
      let e = end;
      for (let r = 0; r < this.routeStart.length; r++) {
        if (p >= this.routeStart[r] && p < this.routeEnd[r]) e = Math.min(end, this.routeEnd[r]);
      }
      this.parts[i].addFree(p, e - p);
      p = e;
    }
  }

  alloc(order: number, c?: AllocConstraints): number {
    const n = this.parts.length;
    if (this.kind === "zone") {
      // Zonelist: highest zone first, skipping zones that start above the address limit.
      const limit = c?.maxAddr !== undefined ? c.maxAddr / 4096 : Number.POSITIVE_INFINITY;
      for (let i = n - 1; i >= 0; i--) {
        if (this.lowest[i] >= limit) continue;
        const pfn = this.parts[i].alloc(order, c);
        if (pfn >= 0) return pfn;
      }
      return -1;
    }
    const want = c?.node ?? 0;
    let pref = 0;
    for (let i = 0; i < n; i++) if (this.nodes[i] === want) pref = i;
    const first = this.parts[pref].alloc(order, c);
    if (first >= 0) return first;
    for (let d = 1; d < n; d++) {
      for (const i of [pref - d, pref + d]) {
        if (i < 0 || i >= n) continue;
        const pfn = this.parts[i].alloc(order, c);
        if (pfn >= 0) return pfn;
      }
    }
    return -1;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    const i = this.partOf(pfn);
    if (i < 0) {
      checkFreeArgs(this.name, pfn, order, this.maxOrder);
      badFree("BAD_FREE", this.name, pfn, order, "not in usable RAM");
    }
    this.parts[i].free(pfn, order);
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    for (const p of this.parts) p.forEachFree!(fn);
  }

  forEachMetaFrame(fn: (pfn: number) => void): void {
    for (const p of this.parts) p.forEachMetaFrame?.(fn);
  }

  stats(): PmmStats {
    const each = this.parts.map((p) => p.stats());
    const sum = (f: (s: PmmStats) => number) => each.reduce((a, s) => a + f(s), 0);
    const s = statsFromFree(
      this,
      this.layout,
      sum((x) => x.managedFrames),
      this.metaBytes,
      sum((x) => x.transientBytes),
    );
    s.freeByOrder = new Array<number>(NR_ORDERS).fill(0);
    for (const x of each) for (let o = 0; o < NR_ORDERS; o++) s.freeByOrder[o] += x.freeByOrder[o] ?? 0;
    return s;
  }

  check(): void {
    for (const p of this.parts) p.check();
    this.parts.forEach((p, i) => {
      p.forEachFree!((pfn, n) => {
        if (this.partOf(pfn) !== i || this.partOf(pfn + n - 1) !== i) {
          invariant(this.name, `free block ${hex(pfn)} of ${this.labels[i]} lies outside it`);
        }
      });
    });
  }

  buddyinfo(): string[] {
    return this.parts.flatMap((p) => p.buddyinfo?.() ?? []);
  }

  dump(): string {
    return this.parts.map((p, i) => `[${this.labels[i]}] ${p.dump?.() ?? ""}`).join("\n");
  }
}

// ---- per-colour stacks ------------------------------------------------------------------------------

export function colourStacksDesign(): PmmDesign {
  return {
    name: "colour-stacks",
    summary:
      "One linked stack-pages instance per cache colour (pfn % colours): O(1) coloured order-0 frames, " +
      "zero standing overhead beyond a 1-bit/frame allocation map.",
    metadataBytes: (layout) => AllocMap.bytes(layout),
    create: (env, layout, metadataPa) => new ColourStacks(env, layout, metadataPa),
    hostBytes: stackHostBytes,
  };
}

export class ColourStacks implements FrameAllocator {
  readonly name = "colour-stacks";
  readonly maxOrder = 0;
  readonly colours: number;
  private readonly stacks: StackPages[] = [];
  private readonly amap: AllocMap;
  private readonly regions: RegionTable;
  /** Registers: next colour for uncoloured requests, managed frames. */
  private next = 0;
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    this.colours = layout.colours ?? 1;
    for (let i = 0; i < this.colours; i++) this.stacks.push(new StackPages(env, layout, 0, false));
    this.amap = new AllocMap(env.port, layout, metadataPa);
    this.regions = new RegionTable(layout.usable);
  }

  addFree(startPfn: number, count: number): void {
    for (let i = 0; i < count; i++) {
      if (this.regions.indexOf(startPfn + i) < 0)
        badFree("BAD_FREE", this.name, startPfn + i, 0, "addFree outside usable RAM");
    }
    for (let i = 0; i < count; i++) this.stacks[(startPfn + i) % this.colours].addFree(startPfn + i, 1);
    this.managed += count;
  }

  alloc(order: number, c?: AllocConstraints): number {
    if (order !== 0 || c !== undefined) {
      if (effectiveOrder(order, c) !== 0) return -1;
    }
    const sub: AllocConstraints | undefined = c?.maxAddr !== undefined ? { maxAddr: c.maxAddr } : undefined;
    if (c?.colour !== undefined) {
      if (c.colour < 0 || c.colour >= this.colours) return -1;
      return this.take(this.stacks[c.colour], sub);
    }
    for (let t = 0; t < this.colours; t++) {
      const s = this.stacks[this.next];
      this.next = this.next + 1 === this.colours ? 0 : this.next + 1;
      const pfn = this.take(s, sub);
      if (pfn >= 0) return pfn;
    }
    return -1;
  }

  private take(s: StackPages, sub: AllocConstraints | undefined): number {
    const pfn = sub === undefined ? s.pop() : s.popMatching(sub);
    if (pfn >= 0) this.amap.set(pfn);
    return pfn;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    checkOrder0Free(this.name, this.regions, pfn, order);
    if (!this.amap.isSet(pfn)) {
      const dbl = this.stacks[pfn % this.colours].contains(pfn);
      badFree(
        dbl ? "DOUBLE_FREE" : "BAD_FREE",
        this.name,
        pfn,
        order,
        dbl ? "already free" : "never allocated (reserved or metadata)",
      );
    }
    this.amap.clear(pfn);
    this.stacks[pfn % this.colours].push(pfn);
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    for (const s of this.stacks) s.forEachFree(fn);
  }

  forEachMetaFrame(fn: (pfn: number) => void): void {
    for (const s of this.stacks) s.forEachMetaFrame(fn);
  }

  stats(): PmmStats {
    let pages = 0;
    for (const s of this.stacks) pages += s.pageCount;
    return statsFromFree(this, this.layout, this.managed, AllocMap.bytes(this.layout), pages * 4096);
  }

  check(): void {
    let held = 0;
    this.stacks.forEach((s, colour) => {
      s.check();
      const wrong = (p: number) => {
        if (p % this.colours !== colour)
          invariant(this.name, `frame ${hex(p)} is on the colour-${colour} stack`);
        if (this.amap.isSet(p)) invariant(this.name, `free frame ${hex(p)} is marked allocated`);
        held++;
      };
      s.forEachFree((p, n) => {
        for (let f = p; f < p + n; f++) wrong(f);
      });
      s.forEachMetaFrame(wrong);
    });
    if (this.amap.popcount() + held !== this.managed) {
      invariant(this.name, `allocated ${this.amap.popcount()} + free ${held} != managed ${this.managed}`);
    }
  }

  dump(): string {
    return [
      `${this.name}: next=${this.next} managed=${this.managed}`,
      ...this.stacks.map((s) => s.dump()),
    ].join("\n");
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(ColourStacks, Partitioned);
