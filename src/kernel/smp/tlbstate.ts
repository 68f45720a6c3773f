/**
 * Per-CPU TLB state and address-space switching, after Linux's arch/x86/mm/tlb.c (cpu_tlbstate,
 * switch_mm_irqs_off, choose_new_asid, enter_lazy_tlb). All of it lives in simulated RAM:
 *
 *   per-CPU area, 256 bytes per CPU (allocated when the kernel starts):
 *     +0   loaded_mm   u64  kernel pointer of the mm struct loaded in CR3 (0: init_mm)
 *     +8   loaded_asid u32  dynamic ASID slot 0..5 (PCID = asid + 1; init_mm uses PCID 0)
 *     +12  is_lazy     u32  running a kernel thread with the old mm still loaded
 *     +16  next_asid   u32  round-robin victim for a new context
 *     +24  ctxs[6]    {ctx_id u64, tlb_gen u64}: which mm each ASID holds and how far its TLB is flushed
 *     +128 the CPU's shootdown request slot (smp/shootdown.ts)
 *
 *   mm struct, 80 bytes (kmalloc-96):
 *     +0 ctx_id u64 (unique, never reused)   +8 tlb_gen u64   +16 root pfn u64   +24 pid u32
 *     +28 flags u32   +32 vma list head u64   +40 global PCID u32 (broadcast mode)   +44 pages u32
 *     +48 cpumask: 256 bits (CPUs that have the mm loaded, lazily or not)
 *
 * Guarantees: a CPU switching to an mm whose PCID context is behind the mm's tlb_gen flushes that
 * PCID (CR3 without the no-flush bit); an up-to-date context is resumed with the no-flush bit. Without
 * PCIDs every switch flushes. A CPU is in an mm's cpumask exactly while it has the mm loaded. In
 * broadcast (INVLPGB) mode every mm has one global PCID on all CPUs and switches never flush: the
 * broadcasts keep every TLB coherent whatever is loaded.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import type { Counters } from "../../machine/counters.ts";
import type { Cpu } from "../../machine/x86/cpu.ts";
import type { KPtr } from "../api.ts";
import type { KernelMem } from "../heap/kmem.ts";
import type { Current } from "../percpu.ts";

export const PCPU_BYTES = 256;
export const PCPU_LOADED_MM = 0;
export const PCPU_LOADED_ASID = 8;
export const PCPU_IS_LAZY = 12;
export const PCPU_NEXT_ASID = 16;
export const PCPU_CTXS = 24;
export const PCPU_REQ = 128;
export const NR_DYN_ASIDS = 6;

export const MM_CTX_ID = 0;
export const MM_TLB_GEN = 8;
export const MM_ROOT = 16;
export const MM_PID = 24;
export const MM_FLAGS = 28;
export const MM_VMAS = 32;
export const MM_PCID = 40;
export const MM_PAGES = 44;
export const MM_CPUMASK = 48;
export const MM_BYTES = 80;

/** First global PCID handed out in broadcast mode (the dynamic ones are 1..6). */
const GLOBAL_PCID_FIRST = 16;
const GLOBAL_PCIDS = 4096 - GLOBAL_PCID_FIRST;

export interface TlbStateOptions {
  pcid: boolean;
  lazy: boolean;
  broadcast: boolean;
  ignoreGenerations: boolean;
}

export class TlbState {
  /** Global PCID allocator (broadcast mode): a bitmap in simulated RAM and a hint register. */
  private pcidHint = 0;

  constructor(
    private readonly kmem: KernelMem,
    private readonly cur: Current,
    readonly cpus: Cpu[],
    /** The per-CPU area, and a 512-byte bitmap of global PCIDs. */
    readonly percpu: KPtr,
    private readonly pcidBitmap: KPtr,
    readonly kernelRoot: number,
    readonly opts: TlbStateOptions,
    private readonly counters: Counters,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    for (const cpu of cpus) {
      if (opts.pcid && !cpu.pcide) cpu.setControl({ pcide: true });
    }
  }

  pcpu(cpu: number): KPtr {
    return this.percpu + cpu * PCPU_BYTES;
  }

  loadedMm(cpu: number): KPtr {
    return this.kmem.read64(this.pcpu(cpu) + PCPU_LOADED_MM);
  }

  isLazy(cpu: number): boolean {
    return this.kmem.read32(this.pcpu(cpu) + PCPU_IS_LAZY) !== 0;
  }

  loadedAsid(cpu: number): number {
    return this.kmem.read32(this.pcpu(cpu) + PCPU_LOADED_ASID);
  }

  ctxGen(cpu: number, asid: number): number {
    return this.kmem.read64(this.pcpu(cpu) + PCPU_CTXS + asid * 16 + 8);
  }

  setCtxGen(cpu: number, asid: number, gen: number): void {
    this.kmem.write64(this.pcpu(cpu) + PCPU_CTXS + asid * 16 + 8, gen);
  }

  tlbGen(mm: KPtr): number {
    return this.kmem.read64(mm + MM_TLB_GEN);
  }

  /** inc_mm_tlb_gen: the generation a flush being started will bring CPUs to. */
  incTlbGen(mm: KPtr): number {
    const g = this.kmem.read64(mm + MM_TLB_GEN) + 1;
    this.kmem.write64(mm + MM_TLB_GEN, g);
    return g;
  }

  cpumaskTest(mm: KPtr, cpu: number): boolean {
    return ((this.kmem.read32(mm + MM_CPUMASK + (cpu >>> 5) * 4) >>> (cpu & 31)) & 1) === 1;
  }

  /** Word `w` of the mm's cpumask (CPUs 32w..32w+31). */
  cpumaskWord(mm: KPtr, w: number): number {
    return this.kmem.read32(mm + MM_CPUMASK + w * 4);
  }

  private cpumaskSet(mm: KPtr, cpu: number, on: boolean): void {
    const p = mm + MM_CPUMASK + (cpu >>> 5) * 4;
    const w = this.kmem.read32(p);
    const bit = 1 << (cpu & 31);
    this.kmem.write32(p, (on ? w | bit : w & ~bit) >>> 0);
  }

  /**
   * switch_mm_irqs_off on the current CPU: load `next` (0: init_mm, the kernel root) whose root table
   * is `root`. Leaves lazy mode.
   */
  switchMm(next: KPtr, root: number): void {
    const id = this.cur.id;
    const cpu = this.cur.cpu;
    const k = this.kmem;
    const p = this.pcpu(id);
    const prev = k.read64(p + PCPU_LOADED_MM);
    const wasLazy = k.read32(p + PCPU_IS_LAZY) !== 0;
    this.counters.mmSwitches++;
    if (wasLazy) k.write32(p + PCPU_IS_LAZY, 0);
    if (prev === next) {
      if (!wasLazy || next === 0 || this.opts.broadcast) return;
      // Back from lazy mode on the same mm: flushes were skipped meanwhile; catch up if behind.
      const asid = k.read32(p + PCPU_LOADED_ASID);
      const gen = this.tlbGen(next);
      if (this.ctxGen(id, asid) < gen && !this.opts.ignoreGenerations) {
        this.setCtxGen(id, asid, gen);
        cpu.writeCr3(root, this.opts.pcid ? asid + 1 : 0, false);
      }
      return;
    }
    if (prev !== 0) this.cpumaskSet(prev, id, false);
    k.write64(p + PCPU_LOADED_MM, next);
    if (next === 0) {
      k.write32(p + PCPU_LOADED_ASID, 0);
      // init_mm has no user mappings and its kernel tables are never freed: nothing to flush.
      if (this.opts.pcid) cpu.writeCr3(root, 0, true);
      else cpu.writeCr3(root);
      if (this.opts.pcid) this.counters.mmSwitchNoFlush++;
      return;
    }
    this.cpumaskSet(next, id, true);
    if (this.opts.broadcast) {
      const pcid = this.opts.pcid ? k.read32(next + MM_PCID) : 0;
      k.write32(p + PCPU_LOADED_ASID, pcid);
      if (this.opts.pcid) {
        cpu.writeCr3(root, pcid, true);
        this.counters.mmSwitchNoFlush++;
      } else cpu.writeCr3(root);
      return;
    }
    this.loadWithAsid(id, cpu, next, root);
  }

  /** choose_new_asid + load_new_mm_cr3. */
  private loadWithAsid(id: number, cpu: Cpu, next: KPtr, root: number): void {
    const k = this.kmem;
    const p = this.pcpu(id);
    const ctxId = k.read64(next + MM_CTX_ID);
    const gen = this.tlbGen(next);
    let asid = -1;
    let needFlush = true;
    for (let a = 0; a < NR_DYN_ASIDS; a++) {
      if (k.read64(p + PCPU_CTXS + a * 16) === ctxId) {
        asid = a;
        needFlush = this.ctxGen(id, a) < gen && !this.opts.ignoreGenerations;
        break;
      }
    }
    if (asid < 0) {
      asid = k.read32(p + PCPU_NEXT_ASID);
      k.write32(p + PCPU_NEXT_ASID, (asid + 1) % NR_DYN_ASIDS);
      k.write64(p + PCPU_CTXS + asid * 16, ctxId);
      needFlush = true;
    }
    if (!this.opts.pcid) needFlush = true;
    if (needFlush) this.setCtxGen(id, asid, gen);
    k.write32(p + PCPU_LOADED_ASID, asid);
    if (this.opts.pcid) cpu.writeCr3(root, asid + 1, !needFlush);
    else cpu.writeCr3(root);
    if (!needFlush) this.counters.mmSwitchNoFlush++;
  }

  /** enter_lazy_tlb: the current CPU runs a kernel thread. */
  enterLazy(): void {
    const id = this.cur.id;
    const p = this.pcpu(id);
    if (this.kmem.read64(p + PCPU_LOADED_MM) === 0) return;
    if (!this.opts.lazy) {
      this.switchMm(0, this.kernelRoot);
      return;
    }
    if (this.kmem.read32(p + PCPU_IS_LAZY) === 0) {
      this.kmem.write32(p + PCPU_IS_LAZY, 1);
      this.counters.lazyEnters++;
    }
  }

  /** A global PCID for a new mm (broadcast mode), or 0 when out of them. */
  allocGlobalPcid(): number {
    const k = this.kmem;
    for (let n = 0; n < GLOBAL_PCIDS; n++) {
      const i = (this.pcidHint + n) % GLOBAL_PCIDS;
      const wp = this.pcidBitmap + (i >>> 5) * 4;
      const w = k.read32(wp);
      if (((w >>> (i & 31)) & 1) === 0) {
        k.write32(wp, (w | (1 << (i & 31))) >>> 0);
        this.pcidHint = i + 1;
        return GLOBAL_PCID_FIRST + i;
      }
    }
    return 0;
  }

  freeGlobalPcid(pcid: number): void {
    const i = pcid - GLOBAL_PCID_FIRST;
    const wp = this.pcidBitmap + (i >>> 5) * 4;
    this.kmem.write32(wp, (this.kmem.read32(wp) & ~(1 << (i & 31))) >>> 0);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(TlbState);
