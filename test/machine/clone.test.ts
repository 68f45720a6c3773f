/**
 * Copies of a booted machine (src/machine/clone.ts, forkKernel): `pagelab compare` boots each
 * configuration once and runs each workload on a copy, so a copy must behave exactly as a fresh boot
 * with the same options, and must not share anything mutable with its original.
 */
import { describe, expect, it } from "vitest";
import { forkKernel, type KernelInternals, startKernel } from "../../src/kernel/kernel.ts";
import { DESIGN_NAMES } from "../../src/kernel/pmm/designs.ts";
import { getWorkload, STANDARD_WORKLOADS } from "../../src/lab/workloads/index.ts";
import {
  BufferRecycler,
  CloneRefused,
  cloneGraph,
  stateless,
  trackLiveBytes,
} from "../../src/machine/clone.ts";
import { Rng } from "../../src/machine/rng.ts";

class Point {
  constructor(
    public x: number,
    public y: number,
  ) {}
  norm(): number {
    return Math.hypot(this.x, this.y);
  }
}

describe("cloneGraph", () => {
  it("copies instances with their prototypes, Maps, Sets, arrays and cycles", () => {
    const p = new Point(3, 4);
    const root = { p, list: [p, 7, "s"], map: new Map([[1, p]]), set: new Set([p]), self: null as unknown };
    root.self = root;
    const c = cloneGraph(root);
    expect(c.p).not.toBe(p);
    expect(c.p).toBeInstanceOf(Point);
    expect(c.p.norm()).toBe(5);
    expect(c.list[0]).toBe(c.p); // one object stays one object
    expect(c.map.get(1)).toBe(c.p);
    expect([...c.set][0]).toBe(c.p);
    expect(c.self).toBe(c);
    c.p.x = 6;
    expect(p.x).toBe(3);
  });

  it("keeps typed-array views of one buffer aliased in the copy, and apart from the original", () => {
    const whole = new Uint32Array(64);
    const view = whole.subarray(8, 16);
    const c = cloneGraph({ whole, view });
    c.view[0] = 99;
    expect(c.whole[8]).toBe(99);
    expect(whole[8]).toBe(0);
    expect(c.view.byteOffset - c.whole.byteOffset).toBe(view.byteOffset - whole.byteOffset);
    // Small buffers share arenas: another array copied with them stays apart from both.
    const other = new Uint32Array(64);
    const d = cloneGraph({ whole, other });
    d.other.fill(5);
    expect(d.whole.every((x) => x === 0)).toBe(true);
    d.whole.fill(3);
    expect(d.other.every((x) => x === 5)).toBe(true);
  });

  it("shares frozen objects, `shared` roots and stateless functions; refuses closures and accessors", () => {
    const frozen = Object.freeze([1, 2]);
    const config = { name: "cfg" };
    const fn = stateless((n: number) => n + 1);
    const c = cloneGraph({ frozen, config, fn }, { shared: [config] });
    expect(c.frozen).toBe(frozen);
    expect(c.config).toBe(config);
    expect(c.fn).toBe(fn);
    let n = 0;
    expect(() => cloneGraph({ inc: () => n++ })).toThrow(CloneRefused);
    const acc = {};
    Object.defineProperty(acc, "v", { get: () => n, enumerable: true });
    expect(() => cloneGraph({ acc })).toThrow(CloneRefused);
    expect(() => cloneGraph({ p: Promise.resolve(1) })).toThrow(CloneRefused);
    // The refusal names the way to the value.
    expect(() => cloneGraph({ a: [1, { f: () => n }] })).toThrow("root.a[1].f is a function (f)");
    expect(() => cloneGraph({ m: new Map([["k", { acc }]]) })).toThrow("root.m[0].acc.v is an accessor");
    expect(() => cloneGraph({ s: new Set([Promise.resolve(2)]) })).toThrow("root.s.item is a Promise");
  });

  it("fills recycled buffers with the original's bytes", () => {
    const big = new Uint8Array(BufferRecycler.MIN_BYTES).fill(5);
    const r = new BufferRecycler();
    const made: ArrayBuffer[] = [];
    const first = cloneGraph({ big }, { recycler: r, made });
    expect(made).toHaveLength(1);
    first.big.fill(9); // the copy is used, then done with
    r.give(made);
    const again: ArrayBuffer[] = [];
    const second = cloneGraph({ big }, { recycler: r, made: again });
    expect(again[0]).toBe(made[0]); // the same host memory, taken back
    expect(second.big.every((b) => b === 5)).toBe(true);
  });

  it("copies only the live part of a tracked slab, and leaves the rest zero even in recycled memory", () => {
    const slab = new Uint8Array(BufferRecycler.MIN_BYTES);
    slab.fill(7, 0, 4096);
    trackLiveBytes(slab.buffer, { liveBytes: () => 4096 });
    const r = new BufferRecycler();
    r.give([new Uint8Array(BufferRecycler.MIN_BYTES).fill(0xee).buffer]); // old bytes everywhere
    const c = cloneGraph({ slab }, { recycler: r });
    expect(c.slab.subarray(0, 4096).every((b) => b === 7)).toBe(true);
    expect(c.slab.subarray(4096).every((b) => b === 0)).toBe(true);
  });
});

const MAP = "qemu:128M";
const KMAPS = ["direct", "recursive", "quickmap", "hybrid", "pool"];

function boot(pmm: string, kmap: string): KernelInternals {
  return startKernel({ map: MAP, pmm, kmap, levels: 4, cpus: 4, seed: 1, check: false });
}

/** A workload's result and the counters it moved, then the kernel's checkers. */
function run(k: KernelInternals, workload: string): string {
  const before = k.counters.snapshot();
  const res = getWorkload(workload).run(k, new Rng(1), { ops: 200 }, () => {});
  const after = k.counters.snapshot();
  k.check();
  return JSON.stringify([res, Object.keys(after).map((key) => after[key] - (before[key] ?? 0))]);
}

function ramDigest(k: KernelInternals): number {
  let h = 0;
  const mem = k.machine.mem;
  for (let pa = 0; pa < 128 * 2 ** 20; pa += 4) h = (Math.imul(h, 31) + mem.peek32(pa)) | 0;
  return h;
}

describe("forkKernel", () => {
  // Every design under every kernel mapping: a copy runs each workload exactly as a fresh boot does.
  for (const pmm of DESIGN_NAMES) {
    it(`${pmm}: a copy of the booted kernel runs every workload as a fresh boot does`, () => {
      for (const kmap of KMAPS) {
        const template = boot(pmm, kmap);
        for (const w of STANDARD_WORKLOADS) {
          const fresh = run(boot(pmm, kmap), w);
          expect(run(forkKernel(template), w), `${pmm}/${kmap}/${w}`).toBe(fresh);
        }
      }
    });
  }

  it("leaves the original as it was while the copy runs, and copies of copies agree", () => {
    const template = boot("buddy", "quickmap");
    const digest = ramDigest(template);
    const counters = JSON.stringify(template.counters.snapshot());
    const a = forkKernel(template);
    const first = run(a, "heap-churn");
    expect(ramDigest(template)).toBe(digest);
    expect(JSON.stringify(template.counters.snapshot())).toBe(counters);
    expect(run(forkKernel(template), "heap-churn")).toBe(first);
    expect(run(template, "heap-churn")).toBe(first);
  });

  it("refuses a kernel holding a closure (the caller then boots afresh)", () => {
    const k = boot("stack", "direct");
    (k.pmm as unknown as { hook: () => number }).hook = () => k.cpus.length;
    expect(() => forkKernel(k)).toThrow(CloneRefused);
  });
});
