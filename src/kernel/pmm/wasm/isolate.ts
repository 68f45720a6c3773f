/**
 * Validation of a WebAssembly allocator in a worker thread, under a wall-clock limit per call.
 *
 * A loop inside a wasm function cannot be interrupted from its own thread: the per-call access budget
 * (design.ts) stops loops that touch memory, but `for (;;) {}` touches nothing. So the validation (the
 * random sequences with the auditor after every step, the first thing a user's allocator meets) runs in
 * a worker; this thread waits synchronously (Atomics.wait) and watches a heartbeat the worker bumps at
 * every call. A call that does not return within the limit is stopped (worker.terminate) and reported
 * with the call and the steps before it. The booted kernel then runs the module in its own thread, at
 * full speed, with the access budget only: the trade-off is documented in the README.
 */
import { workerUrl as packageWorker } from "../../../paths.ts";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import { PagelabError } from "../../../errors.ts";
import type { PmmDesign } from "../interface.ts";
import type { HarnessOptions, Validation } from "../validate.ts";

/** Milliseconds one call may run before it is called a runaway (PAGELAB_WASM_CALL_MS overrides). */
export const CALL_LIMIT_MS = 10_000;
/** Milliseconds the worker may take to start (it compiles the TypeScript of the validator). */
const START_LIMIT_MS = 120_000;

/** Shared memory layout: control words, the call in progress, the steps of the run in progress. */
export const SHARED = { bytes: 1 << 20, ctl: 0, curOff: 64, curMax: 448, logOff: 512 };
export const CTL = { state: 0, beat: 1, curLen: 2, logLen: 3, started: 4 };

export type IsolatedDesign = PmmDesign & {
  validateIsolated?: (o: HarnessOptions, seed: number) => Validation;
};

function workerUrl(): URL {
  return packageWorker("kernel/pmm/wasm/validate-worker");
}

/** Validations already run in this thread, by module digest, options and seed (compare rows share them). */
const done = new Map<string, Validation>();

export function isolatedValidation(d: PmmDesign, spec: string, bytes: Uint8Array): PmmDesign {
  const iso = d as IsolatedDesign;
  if (!existsSync(fileURLToPath(workerUrl()))) return iso;
  const digest = createHash("sha256").update(bytes).digest("hex");
  iso.validateIsolated = (o, seed) => {
    const key = `${digest} ${seed} ${JSON.stringify(o)}`;
    const hit = done.get(key);
    if (hit !== undefined) return hit;
    const v = validateInWorker(spec, o, seed);
    done.set(key, v);
    return v;
  };
  return iso;
}

export function validateInWorker(spec: string, o: HarnessOptions, seed: number): Validation {
  const limit = Number(process.env.PAGELAB_WASM_CALL_MS ?? CALL_LIMIT_MS);
  const sab = new SharedArrayBuffer(SHARED.bytes);
  const ctl = new Int32Array(sab, SHARED.ctl, 8);
  const { port1, port2 } = new MessageChannel();
  const w = new Worker(workerUrl(), {
    workerData: { spec, o, seed, sab, port: port2 },
    transferList: [port2],
    stdout: false,
    stderr: false,
  });
  w.unref();
  let lastBeat = -1;
  let since = Date.now();
  try {
    for (;;) {
      Atomics.wait(ctl, CTL.state, 0, 250);
      if (Atomics.load(ctl, CTL.state) !== 0) break;
      const beat = Atomics.load(ctl, CTL.beat);
      const started = Atomics.load(ctl, CTL.started) === 1;
      if (beat !== lastBeat) {
        lastBeat = beat;
        since = Date.now();
        continue;
      }
      if (Date.now() - since > (started ? limit : START_LIMIT_MS)) {
        void w.terminate();
        const dec = new TextDecoder();
        const cur = dec.decode(new Uint8Array(sab, SHARED.curOff, Atomics.load(ctl, CTL.curLen)).slice());
        const log = dec.decode(new Uint8Array(sab, SHARED.logOff, Atomics.load(ctl, CTL.logLen)).slice());
        if (!started)
          throw new PagelabError(
            "PMM_TIMEOUT",
            `${spec}: the validation worker did not start within ${START_LIMIT_MS / 1000} s`,
          );
        return {
          ok: false,
          runs: 0,
          seed,
          failure: {
            message: `${cur} did not return within ${limit / 1000} s (wall clock): a loop that never ends? It was stopped (not shrunk: each attempt would wait for the clock)`,
            steps: [...log.split("\n").filter((l) => l !== ""), `${cur}  [never returned]`],
          },
        };
      }
    }
    const msg = receiveMessageOnPort(port1)?.message as
      | { ok: true; v: Validation }
      | { ok: false; code: string; message: string }
      | undefined;
    if (msg === undefined)
      throw new PagelabError("PMM_TIMEOUT", `${spec}: the validation worker ended without an answer`);
    if (!msg.ok) throw new PagelabError(msg.code, msg.message);
    return msg.v;
  } finally {
    void w.terminate();
    port1.close();
  }
}
