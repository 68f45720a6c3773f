/**
 * User address spaces. Each process has an mm struct (kmalloc'd, layout in smp/tlbstate.ts), a root
 * page table from the PMM whose kernel half (entries 256..511) is copied from the kernel's root - the
 * kernel tables below it are shared, and their root entries never change after startKernel - and a
 * list of mappings (VMAs) in simulated RAM, kmalloc'd records sorted by address:
 *
 *   VMA record (24 bytes, kmalloc-32): +0 first page u64   +8 pages u32   +12 prot u32   +16 next u64
 *
 * Page tables are edited with a Mapper on the process's root using the kernel's own table access:
 * through the direct map or the fixmap windows (direct, hybrid, quickmap) from any CPU. For the
 * recursive strategy the tables of an address space are only visible through the recursive slot of
 * a root that is loaded, so the current CPU adopts the address space for the edit (switch_mm, as
 * kthread_use_mm does) and goes back afterwards: the cost shows in `mmSwitches` and `cr3Writes`. Every
 * process root has its own recursive slot pointing to itself.
 *
 * mmap maps fresh zeroed frames (no flush needed: nothing can be cached for a non-present page).
 * munmap gathers the flushes of every page it unmaps and sends one shootdown to the mm's cpumask, then
 * frees the frames (after the flush, as tlb_finish_mmu does). fork copies eagerly. exit moves every CPU
 * that has the mm loaded (lazily or not) to init_mm, then frees frames, page tables and the root; TLB
 * entries left under the dead mm's PCID are harmless because its ctx_id is never reused (a CPU that
 * recycles the PCID flushes it).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import { PmmFrames } from "../pmm/frame-source.ts";
import type { Counters } from "../../machine/counters.ts";
import { bulkCopyFrame, type PhysPort } from "../../machine/phys-mem.ts";
import type { Cpu } from "../../machine/x86/cpu.ts";
import { Mapper } from "../../machine/x86/mapper.ts";
import { Access, peekWalk } from "../../machine/x86/mmu.ts";
import { hiWithPfn, loWithPfn, PAGE_4K, Pte, PteHi, pfnOf } from "../../machine/x86/pte.ts";
import { type Levels, vpnLimit } from "../../machine/x86/vaddr.ts";
import type { KPtr, Process, Processes, UserAccess, UserProt } from "../api.ts";
import type { Heap } from "../heap/kmalloc.ts";
import type { KernelMem } from "../heap/kmem.ts";
import type { Current } from "../percpu.ts";
import type { FrameAllocator } from "../pmm/interface.ts";
import type { Shootdown } from "../smp/shootdown.ts";
import {
  MM_BYTES,
  MM_CPUMASK,
  MM_CTX_ID,
  MM_PAGES,
  MM_PCID,
  MM_PID,
  MM_ROOT,
  MM_TLB_GEN,
  MM_VMAS,
  type TlbState,
} from "../smp/tlbstate.ts";

const V_START = 0;
const V_PAGES = 8;
const V_PROT = 12;
const V_NEXT = 16;
const VMA_BYTES = 24;
const PROT_WRITE = 1;
const PROT_EXEC = 2;

export interface ProcessDeps {
  cur: Current;
  cpus: Cpu[];
  kmem: KernelMem;
  heap: Heap;
  pmm: FrameAllocator;
  /** Reaches any frame through the kernel's mappings (roots before they are linked, page copies). */
  port: PhysPort;
  kernelMapper: Mapper;
  state: TlbState;
  shootdown: Shootdown;
  levels: Levels;
  counters: Counters;
  /** The recursive slot when the strategy is recursive, else -1. */
  recursiveSlot: number;
  broadcast: boolean;
}

class Proc implements Process {
  dead = false;
  constructor(
    readonly pid: number,
    readonly mm: KPtr,
    readonly root: number,
    readonly mapper: Mapper,
  ) {}
}

export class ProcessManager implements Processes {
  /** The task list (handles) and id registers. */
  private readonly procs = new Map<KPtr, Proc>();
  private nextPid = 1;
  private nextCtxId = 1;
  private readonly frames: PmmFrames;
  /** Pages below this are user pages (the lower half, minus nothing: recursive slots live above). */
  readonly userLimit: number;

  constructor(private readonly d: ProcessDeps) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.frames = new PmmFrames(d.pmm);
    this.userLimit = vpnLimit(d.levels) / 2;
  }

  private live(p: Process, what: string): Proc {
    const q = this.procs.get(p.mm);
    if (q === undefined || q !== p || q.dead)
      fail("BAD_PROCESS", `${what}: process ${p.pid} does not exist (exited?)`);
    return q;
  }

  create(): Process {
    const d = this.d;
    const k = d.kmem;
    const mm = d.heap.kmalloc(MM_BYTES);
    if (mm === 0) fail("OUT_OF_MEMORY", "no memory for an mm struct");
    const root = d.pmm.alloc(0);
    if (root < 0) {
      d.heap.kfree(mm);
      fail("OUT_OF_MEMORY", "no frame for a process root page table");
    }
    let pcid = 0;
    if (d.broadcast && d.state.opts.pcid) {
      pcid = d.state.allocGlobalPcid();
      if (pcid === 0) {
        d.pmm.free(root, 0);
        d.heap.kfree(mm);
        fail("OUT_OF_MEMORY", "no global PCID left for a new address space");
      }
    }
    const port = d.port;
    port.zeroFrame(root);
    const kroot = d.kernelMapper.root;
    for (let i = 256; i < 512; i++) {
      const lo = port.read32(kroot * 4096 + i * 8);
      if (lo === 0) continue;
      port.write32(root * 4096 + i * 8 + 4, port.read32(kroot * 4096 + i * 8 + 4));
      port.write32(root * 4096 + i * 8, lo);
    }
    if (d.recursiveSlot >= 0) {
      const pa = root * 4096 + d.recursiveSlot * 8;
      port.write32(pa + 4, hiWithPfn(root, PteHi.XD));
      port.write32(pa, loWithPfn(root, Pte.P | Pte.RW));
    }
    const c = d.counters;
    c.ptPages++;
    c.ptPagesAllocated++;
    if (c.ptPages > c.ptPagesPeak) c.ptPagesPeak = c.ptPages;
    const mapper = new Mapper(d.kernelMapper.access, this.frames, {
      levels: d.levels,
      maxPhysAddrBits: d.cpus[0].mem.maxPhysAddrBits,
      counters: c,
      root,
    });
    k.fill(mm, MM_BYTES, 0);
    const pid = this.nextPid++;
    k.write64(mm + MM_CTX_ID, this.nextCtxId++);
    k.write64(mm + MM_TLB_GEN, 1);
    k.write64(mm + MM_ROOT, root);
    k.write32(mm + MM_PID, pid);
    k.write32(mm + MM_PCID, pcid);
    const p = new Proc(pid, mm, root, mapper);
    this.procs.set(mm, p);
    return p;
  }

  /**
   * Run `fn` with `p`'s tables editable by its mapper. Only the recursive strategy needs the current
   * CPU to adopt the address space; it goes back to what it ran before (a kernel thread keeps `p`
   * loaded lazily, as kthread_unuse_mm leaves it).
   */
  private withMm<T>(p: Proc, fn: () => T): T {
    const d = this.d;
    if (d.recursiveSlot < 0) return fn();
    const id = d.cur.id;
    const prev = d.state.loadedMm(id);
    const lazy = d.state.isLazy(id);
    if (prev === p.mm && !lazy) return fn();
    d.state.switchMm(p.mm, p.root);
    try {
      return fn();
    } finally {
      if (lazy || prev === p.mm) d.state.enterLazy();
      else if (prev === 0) d.state.switchMm(0, d.state.kernelRoot);
      else d.state.switchMm(prev, this.procs.get(prev)!.root);
    }
  }

  private checkRange(vpn: number, pages: number, what: string): void {
    if (!Number.isInteger(vpn) || !Number.isInteger(pages) || vpn < 0 || pages < 1)
      fail("BAD_RANGE", `${what}: page ${vpn} + ${pages} pages is not a range of whole pages`);
    if (vpn + pages > this.userLimit)
      fail("BAD_RANGE", `${what}: pages ${hex(vpn)}..${hex(vpn + pages - 1)} reach beyond the user half`);
  }

  mmap(p: Process, vpn: number, pages: number, prot: UserProt = {}): void {
    const q = this.live(p, "mmap");
    this.checkRange(vpn, pages, "mmap");
    const d = this.d;
    const k = d.kmem;
    let prev = 0;
    for (let v = k.read64(q.mm + MM_VMAS); v !== 0; v = k.read64(v + V_NEXT)) {
      const s = k.read64(v + V_START);
      const n = k.read32(v + V_PAGES);
      if (s < vpn + pages && vpn < s + n)
        fail("ALREADY_MAPPED", `mmap: pages ${hex(vpn)}+${pages} overlap the mapping at ${hex(s)}+${n}`);
      if (s < vpn) prev = v;
    }
    const rec = d.heap.kmalloc(VMA_BYTES);
    if (rec === 0) fail("OUT_OF_MEMORY", "mmap: no memory for a VMA record");
    const flags = (prot.write ? PROT_WRITE : 0) | (prot.exec ? PROT_EXEC : 0);
    const ok = this.withMm(q, () => this.mapFresh(q, vpn, pages, flags, null));
    if (!ok) {
      d.heap.kfree(rec);
      fail("OUT_OF_MEMORY", `mmap: out of frames for ${pages} pages`);
    }
    this.linkVma(q, prev, rec, vpn, pages, flags);
  }

  /** Map fresh frames (copies of `src` frames when given). Undoes everything on failure. */
  private mapFresh(q: Proc, vpn: number, pages: number, flags: number, src: number[] | null): boolean {
    const d = this.d;
    const prot = { user: true, write: (flags & PROT_WRITE) !== 0, nx: (flags & PROT_EXEC) === 0 };
    for (let i = 0; i < pages; i++) {
      const pfn = d.pmm.alloc(0);
      let mapped = false;
      if (pfn >= 0) {
        try {
          q.mapper.map(vpn + i, pfn, PAGE_4K, prot).ignore();
          mapped = true;
        } catch (e) {
          if ((e as { code?: string }).code !== "OUT_OF_MEMORY") throw e;
          d.pmm.free(pfn, 0);
        }
      }
      if (!mapped) {
        const g = d.shootdown.gatherMm(q.mm);
        const freed: number[] = [];
        for (let j = 0; j < i; j++) {
          const u = q.mapper.unmap(vpn + j);
          g.add(u.flush);
          freed.push(u.base);
        }
        g.finish();
        for (const f of freed) d.pmm.free(f, 0);
        return false;
      }
      if (src === null) d.port.zeroFrame(pfn);
      else copyFrame(d.port, src[i], pfn);
    }
    const k = d.kmem;
    k.write32(q.mm + MM_PAGES, k.read32(q.mm + MM_PAGES) + pages);
    return true;
  }

  private linkVma(q: Proc, prev: KPtr, rec: KPtr, vpn: number, pages: number, flags: number): void {
    const k = this.d.kmem;
    k.write64(rec + V_START, vpn);
    k.write32(rec + V_PAGES, pages);
    k.write32(rec + V_PROT, flags);
    const at = prev === 0 ? q.mm + MM_VMAS : prev + V_NEXT;
    k.write64(rec + V_NEXT, k.read64(at));
    k.write64(at, rec);
  }

  munmap(p: Process, vpn: number, pages: number): void {
    const q = this.live(p, "munmap");
    this.checkRange(vpn, pages, "munmap");
    const d = this.d;
    const end = vpn + pages;
    const freed: number[] = [];
    // Split first (the only step that allocates), so that a failure changes nothing.
    this.splitAt(q, vpn);
    this.splitAt(q, end);
    this.withMm(q, () => {
      const k = d.kmem;
      const g = d.shootdown.gatherMm(q.mm);
      let at = q.mm + MM_VMAS;
      for (let v = k.read64(at); v !== 0; v = k.read64(at)) {
        const s = k.read64(v + V_START);
        const n = k.read32(v + V_PAGES);
        if (s >= vpn && s + n <= end) {
          for (let i = 0; i < n; i++) {
            const u = q.mapper.unmap(s + i);
            g.add(u.flush);
            freed.push(u.base);
          }
          k.write64(at, k.read64(v + V_NEXT));
          d.heap.kfree(v);
          continue;
        }
        at = v + V_NEXT;
      }
      g.finish();
    });
    for (const f of freed) d.pmm.free(f, 0);
    const k = d.kmem;
    k.write32(q.mm + MM_PAGES, k.read32(q.mm + MM_PAGES) - freed.length);
  }

  /** Split the VMA containing page `at` (strictly inside it) in two. */
  private splitAt(q: Proc, at: number): void {
    const k = this.d.kmem;
    for (let v = k.read64(q.mm + MM_VMAS); v !== 0; v = k.read64(v + V_NEXT)) {
      const s = k.read64(v + V_START);
      const n = k.read32(v + V_PAGES);
      if (at > s && at < s + n) {
        const rec = this.d.heap.kmalloc(VMA_BYTES);
        if (rec === 0) fail("OUT_OF_MEMORY", "munmap: no memory to split a VMA record");
        k.write32(v + V_PAGES, at - s);
        this.linkVma(q, v, rec, at, s + n - at, k.read32(v + V_PROT));
        return;
      }
      if (s > at) return;
    }
  }

  touch(p: Process, vpn: number, access: UserAccess, cpu: number): number {
    const q = this.live(p, "touch");
    const d = this.d;
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= d.cpus.length)
      fail("BAD_CPU", `touch: CPU ${cpu} does not exist (0..${d.cpus.length - 1})`);
    const a =
      access === "write"
        ? Access.WRITE | Access.USER
        : access === "fetch"
          ? Access.FETCH | Access.USER
          : Access.READ | Access.USER;
    const cur = d.cur;
    const prev = cur.id;
    cur.switchTo(cpu);
    try {
      if (d.state.loadedMm(cpu) !== q.mm || d.state.isLazy(cpu)) d.state.switchMm(q.mm, q.root);
      const pfn = cur.cpu.translate(vpn, a);
      if (pfn < 0)
        fail(
          "SEGFAULT",
          `process ${q.pid}: ${access} at user page ${hex(vpn)} on CPU ${cpu} faults (#PF ${hex(cur.cpu.faultCode)})`,
          { pid: q.pid, vpn, cpu },
        );
      return pfn;
    } finally {
      cur.switchTo(prev);
    }
  }

  switchTo(cpu: number, p: Process | null): void {
    const d = this.d;
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= d.cpus.length)
      fail("BAD_CPU", `switchTo: CPU ${cpu} does not exist (0..${d.cpus.length - 1})`);
    const q = p === null ? null : this.live(p, "switchTo");
    d.cur.run(cpu, () => {
      if (q === null) d.state.enterLazy();
      else d.state.switchMm(q.mm, q.root);
    });
  }

  /** The VMAs of a process as [first page, pages, prot] (counted reads: kernel code walking the list). */
  private vmas(q: Proc): [number, number, number][] {
    const k = this.d.kmem;
    const out: [number, number, number][] = [];
    for (let v = k.read64(q.mm + MM_VMAS); v !== 0; v = k.read64(v + V_NEXT))
      out.push([k.read64(v + V_START), k.read32(v + V_PAGES), k.read32(v + V_PROT)]);
    return out;
  }

  fork(p: Process): Process {
    const q = this.live(p, "fork");
    const list = this.vmas(q);
    const src = this.withMm(q, () =>
      list.map(([s, n]) => {
        const f: number[] = [];
        for (let i = 0; i < n; i++) f.push(q.mapper.query(s + i)!.pfn);
        return f;
      }),
    );
    const child = this.create() as Proc;
    let prev = 0;
    for (let i = 0; i < list.length; i++) {
      const [s, n, flags] = list[i];
      const rec = this.d.heap.kmalloc(VMA_BYTES);
      const ok = rec !== 0 && this.withMm(child, () => this.mapFresh(child, s, n, flags, src[i]));
      if (!ok) {
        if (rec !== 0) this.d.heap.kfree(rec);
        this.exit(child);
        fail("OUT_OF_MEMORY", `fork of process ${q.pid}: out of memory`);
      }
      this.linkVma(child, prev, rec, s, n, flags);
      prev = rec;
    }
    return child;
  }

  exit(p: Process): void {
    const q = this.live(p, "exit");
    const d = this.d;
    for (let t = 0; t < d.cpus.length; t++) {
      if (d.state.loadedMm(t) === q.mm) d.cur.run(t, () => d.state.switchMm(0, d.state.kernelRoot));
    }
    const freed: number[] = [];
    this.withMm(q, () => {
      const k = d.kmem;
      const g = d.shootdown.gatherMm(q.mm);
      for (let v = k.read64(q.mm + MM_VMAS); v !== 0; ) {
        const s = k.read64(v + V_START);
        const n = k.read32(v + V_PAGES);
        for (let i = 0; i < n; i++) {
          const u = q.mapper.unmap(s + i);
          g.add(u.flush);
          freed.push(u.base);
        }
        const next = k.read64(v + V_NEXT);
        d.heap.kfree(v);
        v = next;
      }
      g.finish();
    });
    for (const f of freed) d.pmm.free(f, 0);
    if (q.mapper.tables !== 1)
      fail("KERNEL_BUG", `exit: process ${q.pid} still owns ${q.mapper.tables - 1} user page tables`);
    if (d.broadcast && d.state.opts.pcid) {
      const pcid = d.kmem.read32(q.mm + MM_PCID);
      d.shootdown.flushPcidEverywhere(pcid);
      d.state.freeGlobalPcid(pcid);
    }
    d.pmm.free(q.root, 0);
    d.counters.ptPages--;
    d.counters.ptPagesFreed++;
    q.dead = true;
    this.procs.delete(q.mm);
    d.heap.kfree(q.mm);
  }

  list(): Process[] {
    return [...this.procs.values()];
  }

  loadedOn(cpu: number): { proc: Process | null; lazy: boolean } {
    const k = this.d.kmem;
    const p = this.d.state.pcpu(cpu);
    const mm = k.peek64(p);
    return { proc: mm === 0 ? null : (this.procs.get(mm) ?? null), lazy: k.peek32(p + 12) !== 0 };
  }

  /** Pending flush tokens of every process mapper (must be 0 between operations). */
  pendingFlushes(): number {
    let n = 0;
    for (const p of this.procs.values()) n += p.mapper.pending;
    return n;
  }

  check(): void {
    const d = this.d;
    const k = d.kmem;
    const mem = d.cpus[0].mem;
    k.beginPeek();
    try {
      for (let t = 0; t < d.cpus.length; t++) {
        const { proc } = this.loadedOn(t);
        const mm = k.peek64(d.state.pcpu(t));
        if (mm !== 0 && proc === null) fail("MM_INVARIANT", `CPU ${t} has a dead mm ${hex(mm)} loaded`);
        const want = proc === null ? d.state.kernelRoot : proc.root;
        if (d.cpus[t].cr3Pfn !== want)
          fail(
            "MM_INVARIANT",
            `CPU ${t}: CR3 ${hex(d.cpus[t].cr3Pfn * 4096)}, loaded mm's root ${hex(want * 4096)}`,
          );
      }
      const kroot = d.kernelMapper.root;
      for (const p of this.procs.values()) {
        const who = `process ${p.pid}`;
        if (p.mapper.pending !== 0)
          fail("MM_INVARIANT", `${who}: ${p.mapper.pending} flush tokens outstanding`);
        for (let t = 0; t < d.cpus.length; t++) {
          const bit = ((k.peek32(p.mm + MM_CPUMASK + (t >>> 5) * 4) >>> (t & 31)) & 1) === 1;
          if (bit !== (k.peek64(d.state.pcpu(t)) === p.mm))
            fail(
              "MM_INVARIANT",
              `${who}: cpumask bit of CPU ${t} is ${bit ? "set" : "clear"} but the CPU ${bit ? "does not have" : "has"} it loaded`,
            );
        }
        for (let i = 256; i < 512; i++) {
          if (i === d.recursiveSlot) continue;
          // (the Accessed bit is the MMU's, set independently in each copy)
          if (((mem.peek32(p.root * 4096 + i * 8) ^ mem.peek32(kroot * 4096 + i * 8)) & ~Pte.A) !== 0)
            fail("MM_INVARIANT", `${who}: kernel-half root entry ${i} differs from the kernel's`);
        }
        const userTables = countUserTables(mem, p.root, d.levels);
        if (userTables + 1 !== p.mapper.tables)
          fail(
            "MM_INVARIANT",
            `${who}: ${userTables} user page tables in the tree, the mapper counts ${p.mapper.tables - 1}`,
          );
        let vmaPages = 0;
        let last = -1;
        const leaves = countUserLeaves(mem, p.root, d.levels);
        for (let v = k.peek64(p.mm + MM_VMAS); v !== 0; v = k.peek64(v + V_NEXT)) {
          const s = k.peek64(v + V_START);
          const n = k.peek32(v + V_PAGES);
          if (s <= last) fail("MM_INVARIANT", `${who}: VMA list unsorted or overlapping at ${hex(s)}`);
          last = s + n - 1;
          vmaPages += n;
          for (let i = 0; i < n; i++)
            if (peekWalk(d.cpus[0], s + i, p.root) === null)
              fail("MM_INVARIANT", `${who}: page ${hex(s + i)} of a VMA is not mapped`);
        }
        if (leaves !== vmaPages)
          fail("MM_INVARIANT", `${who}: ${leaves} user pages mapped, VMAs cover ${vmaPages}`);
        if (k.peek32(p.mm + MM_PAGES) !== vmaPages)
          fail("MM_INVARIANT", `${who}: mm says ${k.peek32(p.mm + MM_PAGES)} pages, VMAs cover ${vmaPages}`);
      }
    } finally {
      k.endPeek();
    }
  }
}

/** copy_page through the kernel's mappings (two window remaps per page without a direct map). */
function copyFrame(port: PhysPort, from: number, to: number): void {
  bulkCopyFrame(port, from, to);
}

function countUserTables(mem: Cpu["mem"], root: number, levels: Levels): number {
  let n = 0;
  const visit = (t: number, level: number, first: number, last: number) => {
    for (let i = first; i < last; i++) {
      const lo = mem.peek32(t * 4096 + i * 8);
      if ((lo & Pte.P) === 0 || level === 1 || ((level === 2 || level === 3) && (lo & Pte.PS) !== 0))
        continue;
      n++;
      visit(pfnOf(lo, mem.peek32(t * 4096 + i * 8 + 4)), level - 1, 0, 512);
    }
  };
  visit(root, levels, 0, 256);
  return n;
}

function countUserLeaves(mem: Cpu["mem"], root: number, levels: Levels): number {
  let n = 0;
  const visit = (t: number, level: number, last: number) => {
    for (let i = 0; i < last; i++) {
      const lo = mem.peek32(t * 4096 + i * 8);
      if ((lo & Pte.P) === 0) continue;
      if (level === 1) n++;
      else if ((level === 2 || level === 3) && (lo & Pte.PS) !== 0) n += 512 ** (level - 1);
      else visit(pfnOf(lo, mem.peek32(t * 4096 + i * 8 + 4)), level - 1, 512);
    }
  };
  visit(root, levels, 256);
  return n;
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(ProcessManager);
