/**
 * `direct`: Linux's answer. All RAM is mapped at a fixed offset (0xffff888000000000 by default) with
 * 1 GiB pages where alignment allows, else 2 MiB, else 4 KiB at unaligned edges; holes and MMIO stay
 * unmapped unless `mapHoles` asks for the whole span (then every non-RAM range that got a cacheable
 * mapping is reported: the physmap hazard Zircon documents). Any frame is then one load away.
 *
 * The chicken-and-egg: the direct map's own page tables come from the early allocator, which hands out
 * frames the kernel cannot write before they are mapped. As Linux's memory_map_top_down() does, RAM is
 * mapped from the top down: the first tables are written through a fixmap window; as soon as the top
 * range is mapped, later tables (allocated top-down from that very range) are written through the
 * direct map itself.
 */
import { cloneable } from "../../machine/clone.ts";
import { hex } from "../../errors.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import { type FrameSource, PortTableAccess, type TableAccess } from "../../machine/x86/mapper.ts";
import { formatVa } from "../../machine/x86/vaddr.ts";
import { LinearPort, RoutedPort } from "./ports.ts";
import { type Finalized, type KmapContext, type KmapName, KmapStrategy } from "./strategy.ts";

export class DirectStrategy extends KmapStrategy {
  readonly name: KmapName = "direct";
  readonly summary: string =
    "all RAM mapped at a fixed offset with the largest pages alignment allows (Linux)";
  override readonly hasDirectMap = true;
  protected direct!: LinearPort;
  protected tablesPort!: RoutedPort;

  /** Physical limit of the direct map (exclusive); `hybrid` lowers it. */
  protected directLimitPfn(): number {
    return Number.POSITIVE_INFINITY;
  }

  /** The metadata is reached through the direct map: no mapping of its own to align for. */
  override metadataAlign(_bytes: number): number {
    return 4096;
  }

  override physLimit(levels: 4 | 5): number {
    return levels === 5 ? 2 ** 52 : 2 ** 46;
  }

  protected bootAccess(): TableAccess {
    const c = this.ctx;
    this.direct = new LinearPort(c.cur, c.layout.directMap, 0, 0, "direct map");
    this.tablesPort = new RoutedPort([this.direct], this.window(1));
    return new PortTableAccess(this.tablesPort);
  }

  override prepare(ctx: KmapContext): void {
    super.prepare(ctx);
    const limit = this.directLimitPfn();
    const top = Math.min(limit, Math.max(...ctx.ram.map((r) => r.end)));
    const spans = ctx.opts.mapHoles
      ? [{ start: 0, end: top }]
      : ctx.ram.filter((r) => r.start < limit).map((r) => ({ start: r.start, end: Math.min(r.end, limit) }));
    const maxShift = ctx.opts.gbPages === false ? 9 : 18;
    ctx.memblock.purpose = "direct-map page table";
    let g = 0;
    let m = 0;
    let k = 0;
    const windowBefore = ctx.cur.cpu.counters.windowRemaps;
    for (let i = spans.length - 1; i >= 0; i--) {
      const s = spans[i];
      const r = this.bootMapper.mapRange(
        ctx.layout.directMap + s.start,
        s.start,
        s.end - s.start,
        { write: true, nx: ctx.opts.execDirectMap !== true, global: true },
        maxShift,
      );
      this.direct.extend(s.start, s.end);
      g += r.leaves1g;
      m += r.leaves2m;
      k += r.leaves4k;
    }
    ctx.log(
      `direct map of ${spans.length} range(s) up to ${hex(top * 4096)}, top-down: ${g} x 1G + ${m} x 2M + ${k} x 4K leaves, ` +
        `${this.bootMapper.tables} page tables in the tree; ${ctx.cur.cpu.counters.windowRemaps - windowBefore} fixmap-window remaps to write tables the direct map could not reach yet`,
    );
    if (ctx.opts.mapHoles) this.reportHoles(top);
  }

  private reportHoles(topPfn: number): void {
    const mapped = this.ctx.holes.filter((h) => h.start < topPfn * 4096);
    if (mapped.length === 0) return;
    const list = mapped.slice(0, 6).map((h) => `${hex(h.start)}-${hex(h.end - 1)} ${h.type}`);
    this.ctx.log(
      `HAZARD: --map-holes mapped ${mapped.length} non-RAM range(s) write-back cacheable in the direct map (${list.join("; ")}${mapped.length > 6 ? "; ..." : ""}): ` +
        "speculative or prefetching accesses may reach MMIO, and the attributes conflict with the device mappings (Zircon's physmap hazard)",
    );
  }

  override mapMetadata(pa: number, bytes: number): void {
    this.ctx.log(
      `metadata needs no mapping of its own: it is reached through the direct map at ${this.directVa(pa)}`,
    );
    void bytes;
  }

  protected directVa(pa: number): string {
    return formatVa(this.ctx.layout.directMap + Math.floor(pa / 4096), this.ctx.layout.levels, pa % 4096);
  }

  pmmPort(_metaPa: number, _bytes: number): PhysPort {
    return this.direct;
  }

  finalize(frames: FrameSource): Finalized {
    const root = this.newRootWithKernelHalf(frames, this.direct);
    this.ctx.cur.cpu.writeCr3(root);
    return { root, access: new PortTableAccess(this.direct), port: this.direct };
  }

  override directMapCoverage(): { start: number; end: number } | null {
    const cov = this.direct.coverage();
    if (cov.length === 0) return null;
    return { start: Math.min(...cov.map((c) => c.start)), end: Math.max(...cov.map((c) => c.end)) };
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(DirectStrategy);
