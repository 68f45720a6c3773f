/**
 * The driver that validates any PMM design from outside, used by the property tests of the designs in
 * this folder and by bring-your-own allocators (`pagelab boot --pmm ./my-allocator.ts`): fast-check
 * generates random sequences of allocations (mixed orders, with and without constraints), frees, and
 * deliberately bad frees; the auditor (check.ts) checks everything after every step, and each rejected
 * free must leave the state byte-for-byte unchanged. On a failure fast-check shrinks the sequence, and
 * `validateDesign` replays the shrunk one to report it as concrete calls (alloc(2) -> 0x1234, ...).
 */
import fc from "fast-check";
import { fail, hex, PagelabError } from "../../errors.ts";
import { PmmAuditor } from "./check.ts";
import type { AllocConstraints, FrameAllocator, FrameRange, PmmDesign, PmmLayout } from "./interface.ts";
import { bringUp } from "./setup.ts";

export const SEED = 0x5eed_4;

export type Op =
  | { kind: "alloc"; order: number; c: number }
  | { kind: "free"; pick: number }
  | { kind: "bad"; how: number; pick: number };

export interface HarnessOptions {
  layout: PmmLayout;
  reserved?: FrameRange[];
  /** Orders to draw from (default 0..3 plus a few high ones). */
  orders: number[];
  /** Constraint presets: index 0 is "none". */
  constraints: (AllocConstraints | undefined)[];
  runs?: number;
  maxSteps?: number;
  /** Shortest sequence generated (default half of maxSteps); 1 lets a failure shrink to its essence. */
  minSteps?: number;
  /** How many bad frees per run are checked for "state unchanged" with a RAM digest. */
  digestBadFrees?: number;
}

export function opArb(o: HarnessOptions): fc.Arbitrary<Op> {
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("alloc" as const),
        order: fc.constantFrom(...o.orders),
        c: fc.nat(o.constraints.length - 1),
      }),
    },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("bad" as const), how: fc.nat(4), pick: fc.nat() }),
    },
  );
}

const BAD_CODES = new Set(["DOUBLE_FREE", "BAD_FREE", "MISALIGNED_FREE", "WRONG_ORDER"]);

/** Run one sequence; throws on the first violation. Returns counts for sanity assertions. */
export function runOps(
  design: PmmDesign,
  o: HarnessOptions,
  ops: Op[],
  trace?: string[],
): { allocs: number; ooms: number; bad: number } {
  const up = bringUp(design, o.layout, { reserved: o.reserved });
  const a = up.alloc;
  const aud = new PmmAuditor(up);
  aud.full();
  let allocs = 0;
  let ooms = 0;
  let bad = 0;
  let digests = o.digestBadFrees ?? 2;
  const recent: [number, number][] = [];
  for (const op of ops) {
    if (op.kind === "alloc") {
      const c = o.constraints[op.c];
      const pfn = a.alloc(op.order, c);
      trace?.push(
        `alloc(${op.order}${c ? `, ${JSON.stringify(c)}` : ""}) -> ${pfn < 0 ? "-1 (out of memory)" : hex(pfn)}`,
      );
      if (pfn < 0) ooms++;
      else {
        allocs++;
        const eff = op.order + (c?.pageSize === 0x200000 ? 9 : c?.pageSize === 0x40000000 ? 18 : 0);
        aud.onAlloc(pfn, eff, c);
      }
    } else if (op.kind === "free") {
      if (aud.held.size === 0) continue;
      const keys = [...aud.held.keys()];
      const pfn = keys[op.pick % keys.length];
      const order = aud.held.get(pfn)!;
      trace?.push(`free(${hex(pfn)}, ${order})`);
      a.free(pfn, order);
      aud.onFree(pfn);
      recent.push([pfn, order]);
      if (recent.length > 8) recent.shift();
    } else {
      const target = badTarget(o, up.metadata, aud, recent, op);
      if (target === null) continue;
      const before = digests > 0 ? aud.snapshot() : JSON.stringify(a.stats()) + (a.dump?.() ?? "");
      let code = "";
      trace?.push(`free(${hex(target[0])}, ${target[1]})  [a bad free: must be refused]`);
      try {
        a.free(target[0], target[1]);
      } catch (e) {
        if (!(e instanceof PagelabError)) throw e;
        code = e.code;
      }
      if (!BAD_CODES.has(code)) {
        throw new Error(
          `${design.name}: bad free(${target[0]}, ${target[1]}) (${op.how}) was not rejected (code '${code}')`,
        );
      }
      const after = digests > 0 ? aud.snapshot() : JSON.stringify(a.stats()) + (a.dump?.() ?? "");
      if (after !== before)
        throw new Error(`${design.name}: rejected free(${target[0]}, ${target[1]}) changed the state`);
      digests--;
      bad++;
    }
    aud.full();
  }
  // Free everything: all memory must come back (buddies fully coalesced is checked by check()).
  for (const [pfn, order] of [...aud.held]) {
    trace?.push(`free(${hex(pfn)}, ${order})  [returning everything at the end]`);
    a.free(pfn, order);
    aud.onFree(pfn);
  }
  aud.full();
  return { allocs, ooms, bad };
}

function badTarget(
  o: HarnessOptions,
  metadata: FrameRange,
  aud: PmmAuditor,
  recent: [number, number][],
  op: { how: number; pick: number },
): [number, number] | null {
  const keys = [...aud.held.keys()];
  switch (op.how) {
    case 0: {
      // double free of a recently freed block (if not re-allocated since)
      const r = recent.filter(([p]) => !aud.held.has(p));
      return r.length === 0 ? null : r[op.pick % r.length];
    }
    case 1: {
      // a reserved frame, or a standing-metadata frame
      const rs = [...(o.reserved ?? []), metadata].filter((r) => r.end > r.start);
      if (rs.length === 0) return null;
      const r = rs[op.pick % rs.length];
      return [r.start + (op.pick % (r.end - r.start)), 0];
    }
    case 2: {
      // misaligned: a held block of order >= 1, freed from its second frame
      const k = keys.filter((p) => aud.held.get(p)! >= 1);
      if (k.length === 0) return null;
      const p = k[op.pick % k.length];
      return [p + 1, aud.held.get(p)!];
    }
    case 3: {
      // wrong order: a held block freed with an order one too large or one too small
      if (keys.length === 0) return null;
      const p = keys[op.pick % keys.length];
      const ord = aud.held.get(p)!;
      const wrong = ord > 0 && op.pick % 2 === 0 ? ord - 1 : ord + 1;
      return p % 2 ** wrong === 0 ? [p, wrong] : null;
    }
    default: {
      // a frame outside usable RAM
      const last = o.layout.usable[o.layout.usable.length - 1];
      return [last.end + 5, 0];
    }
  }
}

export interface Validation {
  ok: boolean;
  runs: number;
  seed: number;
  /** The first violation, with the shrunk operation sequence as concrete calls. */
  failure?: { message: string; steps: string[] };
}

/**
 * Run `o.runs` random sequences against `design` with the auditor after every step. On a violation,
 * fast-check shrinks the sequence; the shrunk one is replayed with a trace.
 */
export function validateDesign(design: PmmDesign, o: HarnessOptions, seed = SEED): Validation {
  // A WebAssembly allocator is validated in a worker under a wall-clock limit (src/kernel/pmm/wasm).
  const isolated = (design as { validateIsolated?: (o: HarnessOptions, seed: number) => Validation })
    .validateIsolated;
  if (isolated !== undefined) return isolated(o, seed);
  const prop = fc.property(
    fc.array(opArb(o), {
      minLength: o.minSteps ?? (o.maxSteps ?? 120) >> 1,
      maxLength: o.maxSteps ?? 120,
      size: "max",
    }),
    (ops) => {
      runOps(design, o, ops);
    },
  );
  const r = fc.check(prop, { seed, numRuns: o.runs ?? 25 });
  if (!r.failed) return { ok: true, runs: r.numRuns, seed };
  const ops = r.counterexample?.[0] ?? [];
  const steps: string[] = [];
  let message = r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance);
  try {
    runOps(design, o, ops, steps);
  } catch (e) {
    message = e instanceof Error ? e.message : String(e);
  }
  return { ok: false, runs: r.numRuns, seed, failure: { message, steps } };
}

/** The validation a user's design gets before `boot` or `compare` uses it: small, with a reservation. */
export const BYO_VALIDATION: HarnessOptions = {
  layout: {
    usable: [
      { start: 0x100, end: 0xa00, node: 0 },
      { start: 0x1000, end: 0x1800, node: 0 },
    ],
    cpus: 2,
  },
  reserved: [{ start: 0x200, end: 0x220, node: 0 }],
  orders: [0, 0, 0, 1, 2, 3, 9],
  constraints: [undefined, { maxAddr: 0x800000 }],
  runs: 25,
  maxSteps: 80,
  minSteps: 1,
};

/** Calls checked one by one before the checker spaces out (then after calls 16, 32, 64, ...). */
export const CHECK_EVERY_FIRST = 8;

/**
 * A design whose allocators run their own `check()` after their calls, naming the call that broke an
 * invariant: how a user's allocator runs in `pagelab compare`. The checker is an observer: the counters
 * its reads add are restored (as the kernel's own checks do). It runs after each of the first 8
 * addFree/alloc/free calls, then after calls 16, 32, 64, ... (a full check is O(RAM): after every
 * call of a workload that fills 512 MiB it would cost O(n^2)).
 */
export function checkedDesign(d: PmmDesign): PmmDesign {
  return {
    name: d.name,
    summary: d.summary,
    metadataBytes: (l) => d.metadataBytes(l),
    create: (env, layout, pa) => {
      const a = d.create(env, layout, pa);
      let calls = 0;
      let lastOk = 0;
      const after = (what: () => string) => {
        calls++;
        if (calls > CHECK_EVERY_FIRST && (calls & (calls - 1)) !== 0) return;
        const snap = env.counters.snapshot();
        try {
          a.check();
        } catch (e) {
          fail(
            "PMM_INVARIANT",
            `${d.name}: after call ${calls}, ${what()}${lastOk < calls - 1 ? ` (last check passed after call ${lastOk})` : ""}: ${e instanceof Error ? e.message : String(e)}`,
          );
        } finally {
          Object.assign(env.counters, snap);
        }
        lastOk = calls;
      };
      const wrapped: FrameAllocator = {
        name: a.name,
        maxOrder: a.maxOrder,
        addFree: (s, n) => {
          a.addFree(s, n);
          after(() => `addFree(${hex(s)}, ${n})`);
        },
        alloc: (o, c) => {
          const p = a.alloc(o, c);
          after(() => `alloc(${o}) -> ${p < 0 ? -1 : hex(p)}`);
          return p;
        },
        free: (p, o) => {
          a.free(p, o);
          after(() => `free(${hex(p)}, ${o})`);
        },
        stats: () => a.stats(),
        counts: a.counts?.bind(a),
        check: () => a.check(),
        forEachFree: a.forEachFree?.bind(a),
        forEachMetaFrame: a.forEachMetaFrame?.bind(a),
        allocFrames: a.allocFrames?.bind(a),
        dump: a.dump?.bind(a),
      };
      return wrapped;
    },
  };
}
