/**
 * IPC buffers touched from other address spaces: messages between user processes through a kernel
 * buffer, as pipes and sockets move them.
 *
 * Four processes, each with a 16-page user buffer at page 0x400. A message of 64 B - 64 KiB
 * (log-uniform) goes from a sender to another process:
 *
 *   1. on a random CPU, the sender's buffer is read (copy_from_user: one user access per 4 KiB) and
 *      the kernel allocates the message buffer (kmalloc up to 8 KiB, vmalloc above) and writes it;
 *   2. on another random CPU, the kernel reads the buffer, the receiver's user buffer is written
 *      (copy_to_user) and the kernel frees the message buffer there (kfree / vfree): a remote free;
 *   3. every 64 messages the receiver re-maps its buffer (munmap + mmap: a new window), which sends a
 *      shootdown to every CPU that ran it.
 *
 * Processes run wherever the scheduler puts them (random CPUs), so their cpumasks grow, as they do.
 * One operation is one message (`message`) or one remap (`remap`); IPIs sent during kfree, vfree and
 * munmap are attributed to each (counters read around the call).
 */
import type { Process } from "../../kernel/api.ts";
import type { Rng } from "../../machine/rng.ts";
import {
  bump,
  checkOps,
  type LabKernel,
  probeLargestOrder,
  type SamplePoint,
  sampleEvery,
  uncounted,
  type Workload,
  type WorkloadOptions,
  type WorkloadResult,
} from "./interface.ts";

const BUF_VPN = 0x400;
const BUF_PAGES = 16;
const PROCS = 4;

export const ipc: Workload = {
  name: "ipc",
  defaultOps: 2_000,
  describe:
    "messages of 64 B-64 KiB between 4 processes on random CPUs through kmalloc/vmalloc buffers freed on the receiver's CPU; a buffer remap (munmap) every 64 messages",
  run(k: LabKernel, rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult {
    checkOps(this.name, opts);
    const { heap, processes: pr, counters: c } = k;
    const ncpu = k.cpus.length;
    const every = sampleEvery(opts);
    const procs: Process[] = [];
    for (let i = 0; i < PROCS; i++) {
      const p = pr.create();
      pr.mmap(p, BUF_VPN, BUF_PAGES, { write: true });
      procs.push(p);
    }
    const ops: Record<string, number> = { message: 0, remap: 0 };
    const failed: Record<string, number> = {};
    const info: Record<string, number> = {
      kmalloc: 0,
      vmalloc: 0,
      kfree: 0,
      vfree: 0,
      bytes: 0,
      kfreeIpis: 0,
      vfreeIpis: 0,
      munmapIpis: 0,
    };
    for (let i = 0; i < opts.ops; i++) {
      const s = rng.below(PROCS);
      const r = (s + 1 + rng.below(PROCS - 1)) % PROCS;
      const bytes = Math.min(65536, Math.round(64 * 2 ** (rng.float() * 10)));
      const pages = Math.ceil(bytes / 4096);
      const cpuS = rng.below(ncpu);
      const cpuR = rng.below(ncpu);
      if (i > 0 && i % 64 === 0) {
        ops.remap++;
        const before = c.ipis;
        k.run(cpuR, () => {
          pr.munmap(procs[r], BUF_VPN, BUF_PAGES);
          pr.mmap(procs[r], BUF_VPN, BUF_PAGES, { write: true });
        });
        info.munmapIpis += c.ipis - before;
      }
      ops.message++;
      info.bytes += bytes;
      const v = bytes > 8192;
      const buf = k.run(cpuS, () => {
        for (let pg = 0; pg < pages; pg++) pr.touch(procs[s], BUF_VPN + (pg % BUF_PAGES), "read", cpuS);
        const b = v ? heap.vmalloc(bytes) : heap.kmalloc(bytes);
        if (b !== 0) for (let pg = 0; pg < pages; pg++) heap.write32(b, pg * 4096, i >>> 0);
        return b;
      });
      if (v) info.vmalloc++;
      else info.kmalloc++;
      if (buf === 0) {
        bump(failed, v ? "vmalloc" : "kmalloc");
        continue;
      }
      k.run(cpuR, () => {
        for (let pg = 0; pg < pages; pg++) {
          heap.read32(buf, pg * 4096);
          pr.touch(procs[r], BUF_VPN + (pg % BUF_PAGES), "write", cpuR);
        }
        const before = c.ipis;
        if (v) {
          heap.vfree(buf);
          info.vfree++;
          info.vfreeIpis += c.ipis - before;
        } else {
          heap.kfree(buf);
          info.kfree++;
          info.kfreeIpis += c.ipis - before;
        }
      });
      if ((i + 1) % every === 0)
        sample({ op: i + 1, largestOrder: probeLargestOrder(c, k.pmm), heldFrames: PROCS * BUF_PAGES });
    }
    info.lazyPagesAtEnd = uncounted(c, () => heap.stats().lazyPages);
    if (opts.drain) for (const p of procs) pr.exit(p);
    return { ops, failed, info, notes: [] };
  },
};
