/**
 * TLB shootdowns, after Linux's arch/x86/mm/tlb.c.
 *
 * User mappings (flush_tlb_mm_range): the sender bumps the mm's tlb_gen, writes a request record
 * {mm, start, pages, new_tlb_gen, stride, flags} in simulated RAM, flushes locally if it has the mm
 * loaded, and sends an IPI to every other CPU in the mm's cpumask - except lazy-TLB CPUs, which are
 * skipped unless page tables were freed (a lazy CPU may still walk the old tables speculatively). Each
 * target (flush_tlb_func) reads the request through its own mapping and compares generations: already
 * at the mm's generation -> nothing; exactly one behind and this request is the latest -> INVLPG each
 * page (up to the ceiling, 33 by default); otherwise (behind by more, tables freed, a range over the
 * ceiling) -> a full flush of its PCID. A lazy target switches to init_mm instead of flushing.
 *
 * Kernel mappings (flush_tlb_kernel_range): every online CPU, lazy or not; INVLPG per page up to the
 * ceiling, else a full flush including global entries.
 *
 * Broadcast mode (INVLPGB): no IPIs, no request record: the sender issues INVLPGB instructions (up to
 * 8 pages each; the whole PCID past the ceiling) that invalidate every CPU's TLB, then one TLBSYNC.
 * Every mm has a global PCID, so the invalidation reaches CPUs that have it loaded or not.
 *
 * Request records: policy `percpu` writes the sender's slot in the per-CPU area (no allocation; the
 * slot is busy while its round is in flight); policy `alloc` kmallocs a record per shootdown and frees
 * it after the last acknowledgement (one slab alloc+free per shootdown, visible in the counters).
 * Flushes from inside the PMM (the region flusher) always use the slot: no allocation in the allocator.
 *
 * Batching: `gather` collects the flush tokens of many changes (munmap, vfree, lazy purge) and sends
 * one round for their union (Linux's mmu_gather).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail } from "../../errors.ts";
import type { Counters } from "../../machine/counters.ts";
import type { Cpu } from "../../machine/x86/cpu.ts";
import type { Flush } from "../../machine/x86/mapper.ts";
import type { IpiCostModel, KPtr, Process, TlbGather, TlbShootdown } from "../api.ts";
import type { KernelFlusher, KernelMem } from "../heap/kmem.ts";
import type { Current } from "../percpu.ts";
import type { Ipi } from "./ipi.ts";
import { MM_PCID, PCPU_REQ, type TlbState } from "./tlbstate.ts";

/** Pages one INVLPGB covers (CPUID 8000_0008h EDX[15:0] + 1 on Zen 3). */
export const INVLPGB_MAX_PAGES = 8;

const REQ_MM = 0;
const REQ_START = 8;
const REQ_PAGES = 16;
const REQ_GEN = 24;
const REQ_STRIDE = 32;
const REQ_FLAGS = 36;
export const REQ_BYTES = 40;
const F_FREED_TABLES = 1;

export interface ShootdownConfig {
  mode: "ipi" | "invlpgb";
  requests: "percpu" | "alloc";
  ceiling: number;
  cost: IpiCostModel;
  skipIpiTo: number;
}

/** How the alloc policy gets its records (the kernel heap, once it exists). */
export interface RequestAllocator {
  kmalloc(bytes: number): KPtr;
  kfree(ptr: KPtr): void;
}

class Gather implements TlbGather {
  private start = Number.POSITIVE_INFINITY;
  private end = 0;
  private stride = 18;
  private freed = false;
  private count = 0;

  constructor(
    private readonly sd: Shootdown,
    private readonly mm: KPtr,
  ) {}

  get pages(): number {
    return this.count === 0 ? 0 : this.end - this.start;
  }

  add(f: Flush): void {
    if (f.required) {
      if (f.vpn < this.start) this.start = f.vpn;
      if (f.vpn + f.pages > this.end) this.end = f.vpn + f.pages;
      if (f.shift < this.stride) this.stride = f.shift;
      if (f.tablesFreed > 0) this.freed = true;
      this.count++;
    }
    f.ignore(); // the obligation moves to this batch
  }

  finish(): void {
    if (this.count === 0) return;
    const pages = this.end - this.start;
    if (this.mm === 0) this.sd.kernelRange(this.start, pages, this.stride, this.freed, false);
    else this.sd.mmRange(this.mm, this.start, pages, this.stride, this.freed);
    this.count = 0;
  }
}

export class Shootdown implements TlbShootdown, KernelFlusher {
  readonly mode: "ipi" | "invlpgb";
  readonly requests: "percpu" | "alloc";
  readonly cost: IpiCostModel;
  readonly ceiling: number;
  /** Set once the heap exists (policy `alloc`). */
  allocator: RequestAllocator | null = null;
  /** Per-CPU register: the CPU's request slot is in use by a round in flight. */
  private readonly slotBusy: Uint8Array;
  private readonly skipIpiTo: number;

  constructor(
    private readonly cur: Current,
    private readonly cpus: Cpu[],
    private readonly kmem: KernelMem,
    private readonly state: TlbState,
    private readonly ipi: Ipi,
    private readonly counters: Counters,
    cfg: ShootdownConfig,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.mode = cfg.mode;
    this.requests = cfg.requests;
    this.cost = cfg.cost;
    this.ceiling = cfg.ceiling;
    this.skipIpiTo = cfg.skipIpiTo;
    this.slotBusy = new Uint8Array(cpus.length);
  }

  flushKernel(f: Flush): void {
    const req = f.required;
    const vpn = f.vpn;
    const pages = f.pages;
    const shift = f.shift;
    const freed = f.tablesFreed > 0;
    f.ignore();
    if (req) this.kernelRange(vpn, pages, shift, freed, false);
  }

  /** The region flusher: called from inside the PMM, so never allocates. */
  flushKernelAtomic(f: Flush): void {
    const req = f.required;
    const vpn = f.vpn;
    const pages = f.pages;
    const shift = f.shift;
    const freed = f.tablesFreed > 0;
    f.ignore();
    if (req) this.kernelRange(vpn, pages, shift, freed, true);
  }

  flushKernelRange(vpn: number, pages: number, opts: { freedTables?: boolean } = {}): void {
    this.kernelRange(vpn, pages, 0, opts.freedTables === true, false);
  }

  flushUser(proc: Process, f: Flush): void {
    const req = f.required;
    const vpn = f.vpn;
    const pages = f.pages;
    const shift = f.shift;
    const freed = f.tablesFreed > 0;
    f.ignore();
    if (req) this.mmRange(proc.mm, vpn, pages, shift, freed);
  }

  gather(proc: Process | null): TlbGather {
    return new Gather(this, proc === null ? 0 : proc.mm);
  }

  gatherKernel(): Gather {
    return new Gather(this, 0);
  }

  /** A batch for an mm given by pointer (mm/process.ts). */
  gatherMm(mm: KPtr): Gather {
    return new Gather(this, mm);
  }

  // --- the protocol -----------------------------------------------------------------------------

  /** flush_tlb_kernel_range: every online CPU. */
  kernelRange(vpn: number, pages: number, stride: number, freed: boolean, atomic: boolean): void {
    const c = this.counters;
    c.shootdowns++;
    c.shootdownPages += pages;
    if (this.mode === "invlpgb") {
      this.broadcast(-1, vpn, pages, stride, freed);
      return;
    }
    const req = this.openRequest(0, vpn, pages, 0, stride, freed, atomic);
    const self = this.cur.id;
    for (let t = 0; t < this.cpus.length; t++) {
      if (t === self) this.kernelFlushFunc(req);
      else if (t !== this.skipIpiTo) this.ipi.send(t, () => this.kernelFlushFunc(req));
    }
    this.closeRequest(req, atomic);
  }

  /** flush_tlb_mm_range: the mm's cpumask, lazy CPUs skipped unless tables were freed. */
  mmRange(mm: KPtr, vpn: number, pages: number, stride: number, freed: boolean): void {
    const c = this.counters;
    c.shootdowns++;
    c.shootdownPages += pages;
    if (this.mode === "invlpgb") {
      this.state.incTlbGen(mm);
      this.broadcast(this.state.opts.pcid ? this.kmem.read32(mm + MM_PCID) : 0, vpn, pages, stride, freed);
      return;
    }
    const gen = this.state.incTlbGen(mm);
    const req = this.openRequest(mm, vpn, pages, gen, stride, freed, false);
    const self = this.cur.id;
    const words = Math.ceil(this.cpus.length / 32);
    for (let w = 0; w < words; w++) {
      const bits = this.state.cpumaskWord(mm, w);
      if (bits === 0) continue;
      for (let b = 0; b < 32; b++) {
        if (((bits >>> b) & 1) === 0) continue;
        const t = w * 32 + b;
        if (t === self) {
          this.userFlushFunc(req);
          continue;
        }
        if (!freed && this.state.isLazy(t)) {
          c.lazySkips++;
          continue;
        }
        if (t === this.skipIpiTo) continue;
        this.ipi.send(t, () => this.userFlushFunc(req));
      }
    }
    this.closeRequest(req, false);
  }

  /** flush_tlb_func for a user mm, on the current CPU. */
  private userFlushFunc(req: KPtr): void {
    const k = this.kmem;
    const c = this.counters;
    const id = this.cur.id;
    const cpu = this.cur.cpu;
    const mm = k.read64(req + REQ_MM);
    if (this.state.loadedMm(id) !== mm) return;
    if (this.state.isLazy(id)) {
      c.lazyToInitMm++;
      this.state.switchMm(0, this.state.kernelRoot);
      return;
    }
    const asid = this.state.loadedAsid(id);
    const localGen = this.state.ctxGen(id, asid);
    const mmGen = this.state.tlbGen(mm);
    if (localGen >= mmGen) {
      c.genUpToDate++;
      return;
    }
    const gen = k.read64(req + REQ_GEN);
    const pages = k.read64(req + REQ_PAGES);
    const stride = k.read32(req + REQ_STRIDE);
    const freed = (k.read32(req + REQ_FLAGS) & F_FREED_TABLES) !== 0;
    const n = Math.ceil(pages / 2 ** stride);
    const partial = gen === localGen + 1 && gen === mmGen;
    if (partial && !freed && n <= this.ceiling) {
      const start = k.read64(req + REQ_START);
      for (let i = 0; i < n; i++) cpu.invlpg(start + i * 2 ** stride);
      c.shootdownFlushCycles += n * this.cost.invlpgCycles;
    } else {
      if (!partial) c.genBehindFull++;
      c.fullFlushesByShootdown++;
      c.shootdownFlushCycles += this.cost.fullFlushCycles;
      cpu.writeCr3(cpu.cr3Pfn, cpu.pcide ? cpu.currentPcid : 0, false);
    }
    this.state.setCtxGen(id, asid, mmGen);
  }

  /** do_kernel_range_flush / flush_tlb_all, on the current CPU. */
  private kernelFlushFunc(req: KPtr): void {
    const k = this.kmem;
    const c = this.counters;
    const cpu = this.cur.cpu;
    const pages = k.read64(req + REQ_PAGES);
    const stride = k.read32(req + REQ_STRIDE);
    const freed = (k.read32(req + REQ_FLAGS) & F_FREED_TABLES) !== 0;
    const n = Math.ceil(pages / 2 ** stride);
    if (freed || n > this.ceiling) {
      c.fullFlushesByShootdown++;
      c.shootdownFlushCycles += this.cost.fullFlushCycles;
      cpu.invpcid(2);
      return;
    }
    const start = k.read64(req + REQ_START);
    for (let i = 0; i < n; i++) cpu.invlpg(start + i * 2 ** stride);
    c.shootdownFlushCycles += n * this.cost.invlpgCycles;
  }

  /**
   * INVLPGB to every CPU's TLB: `pcid` < 0 for kernel (global) mappings. The hardware acts on all
   * TLBs, so this touches the simulated TLBs directly (no per-CPU instruction is counted).
   */
  private broadcast(pcid: number, vpn: number, pages: number, stride: number, freed: boolean): void {
    const c = this.counters;
    const n = Math.ceil(pages / 2 ** stride);
    const whole = freed || n > this.ceiling;
    const instrs = whole ? 1 : Math.ceil(n / INVLPGB_MAX_PAGES);
    for (const cpu of this.cpus) {
      if (whole) {
        if (pcid < 0) cpu.tlb.flush(-1, false);
        else cpu.tlb.flush(pcid, true);
        cpu.psc?.flush(pcid < 0 ? -1 : pcid);
      } else {
        for (let i = 0; i < n; i++) {
          const v = vpn + i * 2 ** stride;
          if (pcid < 0) cpu.tlb.invalidateAddress(v, cpu.currentPcid, false);
          else cpu.tlb.invalidateAddress(v, pcid, true);
        }
        cpu.psc?.flush(pcid < 0 ? -1 : pcid);
      }
    }
    if (whole) c.fullFlushesByShootdown++;
    c.invlpgb += instrs;
    c.tlbsync++;
    c.shootdownFlushCycles += instrs * this.cost.invlpgbCycles + this.cost.tlbsyncCycles;
  }

  /** Broadcast-flush everything tagged with a global PCID (before it is reused). */
  flushPcidEverywhere(pcid: number): void {
    this.counters.shootdowns++;
    this.broadcast(pcid, 0, 1, 0, true);
  }

  private openRequest(
    mm: KPtr,
    vpn: number,
    pages: number,
    gen: number,
    stride: number,
    freed: boolean,
    atomic: boolean,
  ): KPtr {
    const k = this.kmem;
    let req = 0;
    if (this.requests === "alloc" && !atomic && this.allocator !== null) {
      req = this.allocator.kmalloc(REQ_BYTES);
      if (req !== 0) this.counters.shootdownReqAllocs++;
    }
    if (req === 0) {
      const id = this.cur.id;
      if (this.slotBusy[id] !== 0)
        fail("KERNEL_OOPS", `CPU ${id}: shootdown started while its request slot is in flight`);
      this.slotBusy[id] = 1;
      req = this.state.pcpu(id) + PCPU_REQ;
      this.counters.shootdownReqSlotWrites++;
    }
    k.write64(req + REQ_MM, mm);
    k.write64(req + REQ_START, vpn);
    k.write64(req + REQ_PAGES, pages);
    k.write64(req + REQ_GEN, gen);
    k.write32(req + REQ_STRIDE, stride);
    k.write32(req + REQ_FLAGS, freed ? F_FREED_TABLES : 0);
    return req;
  }

  private closeRequest(req: KPtr, _atomic: boolean): void {
    const id = this.cur.id;
    if (req === this.state.pcpu(id) + PCPU_REQ) this.slotBusy[id] = 0;
    else this.allocator!.kfree(req);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Shootdown);
