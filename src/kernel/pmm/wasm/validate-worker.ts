/**
 * The worker side of isolate.ts: load the module (compiled once, cached), validate it with the same
 * driver as every design, and keep the shared memory current: a heartbeat and the call in progress
 * before every call, the steps of the sequence in progress as they happen.
 */
import { workerData } from "node:worker_threads";
import type { MessagePort } from "node:worker_threads";
import fc from "fast-check";
import { PagelabError, hex } from "../../../errors.ts";
import type { FrameAllocator, PmmDesign } from "../interface.ts";
import { type HarnessOptions, opArb, runOps, type Validation } from "../validate.ts";
import { loadWasmDesign } from "./index.ts";
import { CTL, SHARED } from "./isolate.ts";

const { spec, o, seed, sab, port } = workerData as {
  spec: string;
  o: HarnessOptions;
  seed: number;
  sab: SharedArrayBuffer;
  port: MessagePort;
};
const ctl = new Int32Array(sab, SHARED.ctl, 8);
const cur = new Uint8Array(sab, SHARED.curOff, SHARED.curMax);
const log = new Uint8Array(sab, SHARED.logOff, SHARED.bytes - SHARED.logOff);
const enc = new TextEncoder();

function at(call: string): void {
  const n = enc.encodeInto(call.slice(0, SHARED.curMax / 4), cur).written;
  Atomics.store(ctl, CTL.curLen, n);
  Atomics.add(ctl, CTL.beat, 1);
}

const trace = {
  push(line: string): number {
    const off = Atomics.load(ctl, CTL.logLen);
    if (off + line.length * 3 + 1 < log.length) {
      const n = enc.encodeInto(`${line}\n`, log.subarray(off)).written;
      Atomics.store(ctl, CTL.logLen, off + n);
    }
    return 0;
  },
} as unknown as string[];

/** The design, with every call announced before it runs. */
function watched(d: PmmDesign): PmmDesign {
  return {
    name: d.name,
    summary: d.summary,
    metadataBytes: (l) => {
      at("pmm_metadata_bytes(layout)");
      return d.metadataBytes(l);
    },
    create: (env, layout, pa) => {
      at(`pmm_create(layout, ${hex(pa)})`);
      const a = d.create(env, layout, pa);
      const w: FrameAllocator = {
        name: a.name,
        maxOrder: a.maxOrder,
        addFree: (s, n) => {
          at(`pmm_add_free(${hex(s)}, ${n})`);
          a.addFree(s, n);
        },
        alloc: (ord, c) => {
          at(`pmm_alloc(${ord}${c ? `, ${JSON.stringify(c)}` : ""})`);
          return a.alloc(ord, c);
        },
        free: (p, ord) => {
          at(`pmm_free(${hex(p)}, ${ord})`);
          a.free(p, ord);
        },
        stats: () => {
          at("pmm_stats() / pmm_for_each_free()");
          return a.stats();
        },
        check: () => {
          at("pmm_check()");
          a.check();
        },
        forEachFree: (fn) => {
          at("pmm_for_each_free()");
          a.forEachFree!(fn);
        },
        forEachMetaFrame: (fn) => {
          at("pmm_for_each_meta_frame()");
          a.forEachMetaFrame!(fn);
        },
        dump: () => {
          at("pmm_stats()");
          return a.dump!();
        },
      };
      return w;
    },
  };
}

function validate(): Validation {
  const design = watched(loadWasmDesign(spec, { isolate: false }));
  Atomics.store(ctl, CTL.started, 1);
  const prop = fc.property(
    fc.array(opArb(o), {
      minLength: o.minSteps ?? (o.maxSteps ?? 120) >> 1,
      maxLength: o.maxSteps ?? 120,
      size: "max",
    }),
    (ops) => {
      Atomics.store(ctl, CTL.logLen, 0);
      runOps(design, o, ops, trace);
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

try {
  port.postMessage({ ok: true, v: validate() });
} catch (e) {
  port.postMessage(
    e instanceof PagelabError
      ? { ok: false, code: e.code, message: e.message }
      : { ok: false, code: "PMM_TRAP", message: e instanceof Error ? e.message : String(e) },
  );
}
Atomics.store(ctl, CTL.state, 1);
Atomics.notify(ctl, CTL.state);
