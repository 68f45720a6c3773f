/**
 * Kernel access to physical memory through its own mappings. Each port is a `PhysPort` (what the PMM
 * and the mapper are given) whose every access is a load or store *by the CPU at a virtual address*:
 * translated by the MMU (TLB hit or page walk), counted, and faulting if the kernel got its mappings
 * wrong. Which virtual address a physical one is reached at is the kernel-mapping strategy's business:
 *
 *  - `LinearPort`: a physical range mapped at a fixed virtual offset (the direct map, the kernel image,
 *    the PMM metadata region);
 *  - `WindowPort`: a per-CPU temporary window (fixmap slot): to touch frame F the kernel writes the
 *    window's PTE to point at F and INVLPGs the window, unless it already points there;
 *  - `RoutedPort`: picks one of the above by physical range (e.g. metadata through its region, the rest
 *    through a window);
 *  - `SwitchPort`: a port whose target can be re-bound (the boot sequence re-binds the PMM's port when
 *    it switches to the final address space).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import {
  bulkCopyFrame,
  bulkFill,
  bulkIsFilled,
  type PhysPort,
  readWords,
  writeWords,
} from "../../machine/phys-mem.ts";
import type { Current } from "../percpu.ts";
import { Access } from "../../machine/x86/mmu.ts";
import { encodeLeaf, PAGE_4K } from "../../machine/x86/pte.ts";

/**
 * A bulk operation done page by page through a mapping: `target(pfn, write)` gives the frame the kernel's
 * virtual address for physical frame `pfn` translates to (one TLB lookup or walk per page).
 */
function pagewise(
  pa: number,
  bytes: number,
  fn: (targetPa: number, len: number) => boolean | undefined,
  target: (pfn: number) => number,
): boolean {
  let p = pa;
  const end = pa + bytes;
  while (p < end) {
    const pfn = Math.floor(p / 4096);
    const len = Math.min(end, (pfn + 1) * 4096) - p;
    if (fn(target(pfn) * 4096 + (p - pfn * 4096), len) === false) return false;
    p += len;
  }
  return true;
}

/**
 * A bulk store done page by page through a mapping, as `pagewise`, with the pages whose targets are
 * physically contiguous handed to `fn` as one run: the same translations in the same order and the
 * same bytes, but RAM sees whole runs (a 2 MiB chunk filled whole stays one uniform word).
 */
function pagewiseRuns(
  pa: number,
  bytes: number,
  fn: (targetPa: number, len: number) => void,
  target: (pfn: number) => number,
): void {
  let runPa = -1;
  let runLen = 0;
  const end = pa + bytes;
  for (let p = pa; p < end; ) {
    const pfn = Math.floor(p / 4096);
    const len = Math.min(end, (pfn + 1) * 4096) - p;
    const t = target(pfn) * 4096 + (p - pfn * 4096);
    if (runPa >= 0 && runPa + runLen === t) runLen += len;
    else {
      if (runPa >= 0) fn(runPa, runLen);
      runPa = t;
      runLen = len;
    }
    p += len;
  }
  if (runPa >= 0) fn(runPa, runLen);
}

/**
 * What every port that reaches memory through one virtual page per frame shares: `target(pfn)` gives
 * the frame the kernel's virtual address for physical frame `pfn` translates to (one TLB lookup or
 * walk), and the bulk operations go page by page through it.
 */
abstract class MappedPort implements PhysPort {
  constructor(readonly cur: Current) {}

  abstract read32(pa: number): number;
  abstract write32(pa: number, value: number): void;
  protected abstract target(pfn: number, access: number): number;
  /** The virtual page at which frame `pfn` is reached now (a window is pointed at it first). */
  protected abstract pageOf(pfn: number): number;

  /** Word loads within one page, counted as `read32` each (Cpu.load32Run). */
  readWords(pa: number, dst: Uint32Array, from: number, n: number): void {
    const pfn = Math.floor(pa / 4096);
    this.cur.cpu.load32Run(this.pageOf(pfn), pa - pfn * 4096, dst, from, n);
  }

  /** Word stores within one page, counted as `write32` each (Cpu.store32Run). */
  writeWords(pa: number, src: Uint32Array, from: number, n: number): void {
    const pfn = Math.floor(pa / 4096);
    this.cur.cpu.store32Run(this.pageOf(pfn), pa - pfn * 4096, src, from, n);
  }

  zeroFrame(pfn: number): void {
    this.cur.cpu.mem.zeroFrame(this.target(pfn, Access.WRITE));
  }

  fill(pa: number, bytes: number, byte: number): void {
    const mem = this.cur.cpu.mem;
    pagewiseRuns(
      pa,
      bytes,
      (t, len) => mem.fill(t, len, byte),
      (pfn) => this.target(pfn, Access.WRITE),
    );
  }

  isFilled(pa: number, bytes: number, byte: number): boolean {
    const mem = this.cur.cpu.mem;
    return pagewise(
      pa,
      bytes,
      (t, len) => mem.isFilled(t, len, byte),
      (pfn) => this.target(pfn, Access.READ),
    );
  }

  /** The bytes of frame `pfn`, read through this mapping (one translation; a bulk read). */
  readFrame(pfn: number): Uint8Array {
    return this.cur.cpu.mem.readBytes(this.target(pfn, Access.READ) * 4096, 4096);
  }

  writeFrame(pfn: number, data: Uint8Array): void {
    this.cur.cpu.mem.writeBytes(this.target(pfn, Access.WRITE) * 4096, data);
  }

  /**
   * copy_page through this mapping. With a direct map both pages are mapped at once; with one window
   * the source is copied to a per-CPU bounce page, then the window moves to the destination: two remaps
   * per page, never one per word.
   */
  copyFrame(from: number, to: number): void {
    this.writeFrame(to, this.readFrame(from));
  }
}

/**
 * Physical frames mapped at a fixed virtual offset: frame F at virtual page `vpnBase + F - pfnBase`.
 * `covered` lists the frame intervals actually mapped (a direct map under construction has holes);
 * `covers` is what a RoutedPort asks.
 */
export class LinearPort extends MappedPort {
  readonly pfnBase: number;
  private readonly covered: { start: number; end: number }[] = [];

  constructor(
    cur: Current,
    readonly vpnBase: number,
    paStart: number,
    bytes: number,
    readonly name: string,
  ) {
    super(cur);
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.pfnBase = paStart / 4096;
    if (bytes > 0) this.covered.push({ start: this.pfnBase, end: this.pfnBase + Math.ceil(bytes / 4096) });
  }

  covers(pa: number): boolean {
    const pfn = Math.floor(pa / 4096);
    for (const c of this.covered) if (pfn >= c.start && pfn < c.end) return true;
    return false;
  }

  /** Add frames [start, end) to what is mapped (the direct map while it is being built). */
  extend(start: number, end: number): void {
    this.covered.push({ start, end });
  }

  coverage(): readonly { start: number; end: number }[] {
    return this.covered;
  }

  read32(pa: number): number {
    const pfn = Math.floor(pa / 4096);
    return this.cur.cpu.load32(this.vpnBase + pfn - this.pfnBase, pa - pfn * 4096);
  }

  write32(pa: number, value: number): void {
    const pfn = Math.floor(pa / 4096);
    this.cur.cpu.store32(this.vpnBase + pfn - this.pfnBase, pa - pfn * 4096, value);
  }

  protected pageOf(pfn: number): number {
    return this.vpnBase + pfn - this.pfnBase;
  }

  protected target(pfn: number, access: number): number {
    const t = this.cur.cpu.translate(this.vpnBase + pfn - this.pfnBase, access);
    if (t < 0)
      fail(
        "KERNEL_OOPS",
        `${this.name}: frame ${hex(pfn)} is not mapped (#PF ${hex(this.cur.cpu.faultCode)})`,
      );
    return t;
  }
}

/**
 * A fixmap window: one PTE in a page table the kernel can always reach (`ptePort` at `ptePa`), mapping
 * virtual page `windowVpn` to whichever frame the kernel wants to touch. Remapping costs two stores and
 * an INVLPG (`counters.windowRemaps`).
 */
export class WindowPort extends MappedPort {
  /** Per-CPU register: the frame each CPU's window points at (-1: none). */
  private readonly current: number[] = [];

  /**
   * Slot `kind` of every CPU's window pair: CPU c uses fixmap slot `2c + kind` at virtual page
   * `fixmapVpn + 2c + kind`, whose PTE is at `ptePa + (2c + kind) * 8` (reached through `ptePort`).
   */
  constructor(
    cur: Current,
    readonly fixmapVpn: number,
    readonly kind: number,
    readonly ptePort: PhysPort,
    readonly ptePa: number,
  ) {
    super(cur);
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
  }

  private get windowVpn(): number {
    return this.fixmapVpn + 2 * this.cur.id + this.kind;
  }

  private point(pfn: number): void {
    const id = this.cur.id;
    if (this.current[id] === pfn) return;
    const slot = 2 * id + this.kind;
    // Global, as Linux's fixmap (PAGE_KERNEL): with PCIDs, INVLPG drops a non-global entry only for
    // the current PCID, and the window's old translation would survive under the others.
    const e = encodeLeaf(pfn, PAGE_4K, { write: true, nx: true, global: true });
    this.ptePort.write32(this.ptePa + slot * 8 + 4, e.hi);
    this.ptePort.write32(this.ptePa + slot * 8, e.lo);
    this.cur.cpu.invlpg(this.fixmapVpn + slot);
    this.cur.cpu.counters.windowRemaps++;
    this.current[id] = pfn;
  }

  read32(pa: number): number {
    const pfn = Math.floor(pa / 4096);
    this.point(pfn);
    return this.cur.cpu.load32(this.windowVpn, pa - pfn * 4096);
  }

  write32(pa: number, value: number): void {
    const pfn = Math.floor(pa / 4096);
    this.point(pfn);
    this.cur.cpu.store32(this.windowVpn, pa - pfn * 4096, value);
  }

  protected pageOf(pfn: number): number {
    this.point(pfn);
    return this.windowVpn;
  }

  protected target(pfn: number, access: number): number {
    this.point(pfn);
    const t = this.cur.cpu.translate(this.windowVpn, access);
    if (t < 0) fail("KERNEL_OOPS", `window: #PF ${hex(this.cur.cpu.faultCode)} touching frame ${hex(pfn)}`);
    return t;
  }
}

/** Routes each access by physical frame: the first `LinearPort` that covers it, else the fallback. */
export class RoutedPort implements PhysPort {
  private last: LinearPort | null = null;

  constructor(
    readonly routes: LinearPort[],
    readonly fallback: PhysPort,
  ) {}

  private pick(pa: number): PhysPort {
    const l = this.last;
    if (l?.covers(pa)) return l;
    for (const r of this.routes) {
      if (r.covers(pa)) {
        this.last = r;
        return r;
      }
    }
    return this.fallback;
  }

  read32(pa: number): number {
    return this.pick(pa).read32(pa);
  }

  write32(pa: number, value: number): void {
    this.pick(pa).write32(pa, value);
  }

  readWords(pa: number, dst: Uint32Array, from: number, n: number): void {
    readWords(this.pick(pa), pa, dst, from, n);
  }

  writeWords(pa: number, src: Uint32Array, from: number, n: number): void {
    writeWords(this.pick(pa), pa, src, from, n);
  }

  zeroFrame(pfn: number): void {
    this.pick(pfn * 4096).zeroFrame(pfn);
  }

  copyFrame(from: number, to: number): void {
    const src = this.pick(from * 4096);
    const data = src instanceof MappedPort ? src.readFrame(from) : null;
    const dst = this.pick(to * 4096);
    if (data !== null && dst instanceof MappedPort) dst.writeFrame(to, data);
    else for (let o = 0; o < 4096; o += 4) this.write32(to * 4096 + o, this.read32(from * 4096 + o));
  }

  fill(pa: number, bytes: number, byte: number): void {
    pagewise(
      pa,
      bytes,
      (t, len) => void this.pick(t).fill!(t, len, byte),
      (pfn) => pfn,
    );
  }

  isFilled(pa: number, bytes: number, byte: number): boolean {
    return pagewise(
      pa,
      bytes,
      (t, len) => this.pick(t).isFilled!(t, len, byte),
      (pfn) => pfn,
    );
  }
}

/** A port that forwards to a target that can be re-bound. */
export class SwitchPort implements PhysPort {
  constructor(public target: PhysPort) {}

  read32(pa: number): number {
    return this.target.read32(pa);
  }

  write32(pa: number, value: number): void {
    this.target.write32(pa, value);
  }

  readWords(pa: number, dst: Uint32Array, from: number, n: number): void {
    readWords(this.target, pa, dst, from, n);
  }

  writeWords(pa: number, src: Uint32Array, from: number, n: number): void {
    writeWords(this.target, pa, src, from, n);
  }

  zeroFrame(pfn: number): void {
    this.target.zeroFrame(pfn);
  }

  copyFrame(from: number, to: number): void {
    bulkCopyFrame(this.target, from, to);
  }

  fill(pa: number, bytes: number, byte: number): void {
    bulkFill(this.target, pa, bytes, byte);
  }

  isFilled(pa: number, bytes: number, byte: number): boolean {
    return bulkIsFilled(this.target, pa, bytes, byte);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(LinearPort, RoutedPort, SwitchPort, WindowPort);
