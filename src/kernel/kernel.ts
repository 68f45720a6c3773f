/**
 * `startKernel`: boot (src/lab/boot.ts) with N CPUs (default 4), then wire SMP - per-CPU TLB state,
 * shootdowns installed as the flusher of the boot's regions - the kernel heap and user processes.
 * The API (types, pointer encoding, options) is documented in api.ts and re-exported here.
 */
import { bootKernel } from "../lab/boot.ts";
import type { Kernel, KernelHeap, KernelOptions, Processes, TlbShootdown } from "./api.ts";
import { notImplemented } from "./api.ts";

export * from "./api.ts";

export function startKernel(opts: KernelOptions = {}): Kernel {
  const boot = bootKernel({ ...opts, cpus: opts.cpus ?? 4 });
  const ni = (what: string) => () => notImplemented(what);
  const shootdown: TlbShootdown = {
    mode: opts.shootdown?.mode ?? "ipi",
    requests: opts.shootdown?.requests ?? "percpu",
    cost: {
      ipiCycles: 1200,
      invlpgCycles: 250,
      fullFlushCycles: 500,
      invlpgbCycles: 300,
      tlbsyncCycles: 600,
    },
    flushKernel: ni("shootdown.flushKernel"),
    flushKernelRange: ni("shootdown.flushKernelRange"),
    flushUser: ni("shootdown.flushUser"),
    gather: ni("shootdown.gather"),
  };
  const heap: KernelHeap = {
    kmalloc: ni("heap.kmalloc"),
    kfree: ni("heap.kfree"),
    ksize: ni("heap.ksize"),
    vmalloc: ni("heap.vmalloc"),
    vfree: ni("heap.vfree"),
    purgeLazy: ni("heap.purgeLazy"),
    read32: ni("heap.read32"),
    write32: ni("heap.write32"),
    check: ni("heap.check"),
    stats: ni("heap.stats"),
  };
  const processes: Processes = {
    create: ni("processes.create"),
    mmap: ni("processes.mmap"),
    munmap: ni("processes.munmap"),
    touch: ni("processes.touch"),
    switchTo: ni("processes.switchTo"),
    fork: ni("processes.fork"),
    exit: ni("processes.exit"),
    list: ni("processes.list"),
    loadedOn: ni("processes.loadedOn"),
    check: ni("processes.check"),
  };
  return {
    boot,
    machine: boot.machine,
    current: boot.current,
    cpus: boot.machine.cpus,
    pmm: boot.pmmAllocator,
    mapper: boot.mapper,
    shootdown,
    heap,
    processes,
    counters: boot.machine.counters,
    run: (cpu, fn) => boot.current.run(cpu, fn),
    check: ni("kernel.check"),
  };
}
