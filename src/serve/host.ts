/**
 * Where the explorer's boots run: each boot session lives in its own worker thread (session-worker.ts),
 * so a boot never blocks the server's event loop (health, static files, other sessions' queries).
 *
 * Budgets, per boot:
 *   - host memory: refused up front when the boot's estimate (hostBytesEstimate, as `pagelab boot
 *     --host-budget`) exceeds `hostBudget`; while it runs, the worker's JS heap is capped
 *     (resourceLimits) and the process's resident memory is sampled: a boot whose growth passes the
 *     budget is terminated;
 *   - time: a boot still running after `bootTimeoutMs` is terminated;
 *   - the client: when the request's connection closes before the answer, the boot is terminated.
 * One boot at a time per client (the `x-pagelab-client` header the page sends, else the peer address):
 * a second boot while the first runs is refused with 409, so that no request is silently dropped;
 * at most `maxBoots` boots run at once (429 beyond). Finished sessions stay in their workers (the
 * `sessions` most recently used; older workers are terminated and their ids answer NO_SESSION).
 */
import { workerUrl } from "../paths.ts";
import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import type { ApiReply } from "./api.ts";
import type { BootRequest } from "./session.ts";
import type { WorkerMessage } from "./session-worker.ts";

export interface HostOptions {
  /** Sessions kept (each a worker). Default 4. */
  sessions?: number;
  /** A boot still running after this many ms is terminated. Default 60 s. */
  bootTimeoutMs?: number;
  /** Host bytes one boot may use (estimate up front, resident growth while it runs). Default 2 GiB. */
  hostBudget?: number;
  /** Boots running at once, all clients together. Default 2. */
  maxBoots?: number;
}

export const DEFAULT_BOOT_TIMEOUT_MS = 60_000;
export const DEFAULT_HOST_BUDGET = 2 * 2 ** 30;

/** Why a boot ended without its answer. */
export type EndReason = "timeout" | "memory" | "client-gone" | "closed";

interface Running {
  client: string;
  worker: Worker;
  what: string;
  t0: number;
  rss0: number;
  finish: (reply: ApiReply) => void;
}

interface Live {
  worker: Worker;
  next: number;
  pending: Map<number, (r: ApiReply) => void>;
}

const WORKER_URL = workerUrl("serve/session-worker");

function err(status: number, code: string, message: string): ApiReply {
  return { status, body: { error: { code, message } } };
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

export class BootHost extends EventEmitter {
  readonly sessions: number;
  readonly bootTimeoutMs: number;
  readonly hostBudget: number;
  readonly maxBoots: number;
  private readonly running = new Set<Running>();
  private readonly live = new Map<string, Live>();
  private sampler: NodeJS.Timeout | null = null;
  /** A loaded, idle worker for the next boot (made after the first boot). */
  private spare: Worker | null = null;
  private closed = false;

  constructor(o: HostOptions = {}) {
    super();
    this.sessions = o.sessions ?? 4;
    this.bootTimeoutMs = o.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
    this.hostBudget = o.hostBudget ?? DEFAULT_HOST_BUDGET;
    this.maxBoots = o.maxBoots ?? 2;
  }

  /** Boots running now. */
  get runningBoots(): number {
    return this.running.size;
  }

  /** Workers alive: running boots plus kept sessions. */
  get liveWorkers(): number {
    return this.running.size + this.live.size;
  }

  /**
   * Start a boot for `client`; `answer` is called exactly once with its reply. Returns a function that
   * cancels the boot (the client went away), or null when the boot was refused at once.
   */
  boot(client: string, req: BootRequest, answer: (r: ApiReply) => void): (() => void) | null {
    const refused = this.refusal(client);
    if (refused) {
      answer(refused);
      return null;
    }
    const worker = this.takeWorker();
    const m = req.map;
    const what = `${m.preset ?? (m.name ? `upload ${m.name}` : "pasted map")}, ${req.pmm}`;
    const run = this.startRun(client, worker, what, answer);
    if (!this.sampler) this.sampler = setInterval(() => this.sample(), 100);
    this.watch(run);
    worker.postMessage({ type: "boot", req: { ...req, hostBudget: this.hostBudget } });
    return () => this.end(run, "client-gone", err(499, "CANCELLED", "the client closed its request"));
  }

  /** Why a boot from `client` is refused at once (409: one already runs for it; 429: too many run), or null. */
  private refusal(client: string): ApiReply | null {
    for (const r of this.running)
      if (r.client === client)
        return err(
          409,
          "BOOT_RUNNING",
          `a boot from this client is already running (${r.what}, ${seconds(Math.round((performance.now() - r.t0) / 100) * 100)} so far): wait for its answer, or close its request to cancel it`,
        );
    if (this.running.size >= this.maxBoots)
      return err(
        429,
        "BUSY",
        `${this.running.size} boots are running (the server runs at most ${this.maxBoots} at once): try again when one ends`,
      );
    return null;
  }

  /**
   * Record a running boot, with its time budget. Its `finish` answers once: it stops the timer, forgets
   * the boot (and the memory sampler, when no boot runs any more), then calls `answer`.
   */
  private startRun(client: string, worker: Worker, what: string, answer: (r: ApiReply) => void): Running {
    let done = false;
    const run: Running = {
      client,
      worker,
      what,
      t0: performance.now(),
      rss0: process.memoryUsage.rss(),
      finish: (reply) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.running.delete(run);
        if (this.running.size === 0 && this.sampler) {
          clearInterval(this.sampler);
          this.sampler = null;
        }
        answer(reply);
      },
    };
    this.running.add(run);
    const timer = setTimeout(
      () =>
        this.end(
          run,
          "timeout",
          err(
            503,
            "BOOT_TIMEOUT",
            `the boot (${what}) took longer than the server's ${seconds(this.bootTimeoutMs)} budget and was stopped: try a smaller map or a design with less metadata (bitmap)`,
          ),
        ),
      this.bootTimeoutMs,
    );
    return run;
  }

  /** Finish a running boot from its worker's answer, error (out of memory or other) or exit. */
  private watch(run: Running): void {
    const { worker, what } = run;
    worker.on("message", (msg: WorkerMessage) => {
      if (msg.type === "booted") {
        this.keep(msg.session, worker);
        run.finish(msg.reply);
      } else if (msg.type === "failed") {
        void worker.terminate();
        run.finish(msg.reply);
      }
    });
    worker.on("error", (e: Error & { code?: string }) => {
      const oom = e.code === "ERR_WORKER_OUT_OF_MEMORY";
      run.finish(
        oom
          ? err(
              503,
              "HOST_MEMORY",
              `the boot (${what}) used more memory than the server's ${gib(this.hostBudget)} budget and was stopped: try a smaller map or a design with less metadata (bitmap)`,
            )
          : err(500, "WORKER_DIED", `the boot (${what}) failed: ${String(e.message).split("\n")[0]}`),
      );
    });
    worker.on("exit", () =>
      run.finish(err(500, "WORKER_DIED", `the boot (${what}) ended without an answer`)),
    );
  }

  /** Forward a session query (frames, frame, walk, table) to the session's worker. */
  query(session: string, method: string, path: string, query: string): Promise<ApiReply> {
    const live = this.live.get(session);
    if (!live)
      return Promise.resolve(
        err(
          404,
          "NO_SESSION",
          `no boot session '${session}' (sessions expire after ${this.sessions} newer boots): boot again`,
        ),
      );
    this.live.delete(session);
    this.live.set(session, live);
    return new Promise((resolve) => {
      const id = live.next++;
      const timer = setTimeout(() => {
        live.pending.delete(id);
        this.drop(session);
        resolve(
          err(
            503,
            "QUERY_TIMEOUT",
            `the query took longer than ${seconds(this.bootTimeoutMs)}; the session was closed: boot again`,
          ),
        );
      }, this.bootTimeoutMs);
      live.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      live.worker.postMessage({ type: "query", id, method, path, query });
    });
  }

  /** Terminate every worker (the server is closing). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.spare) void this.spare.terminate();
    this.spare = null;
    for (const r of [...this.running])
      this.end(r, "closed", err(503, "CLOSING", "the server is shutting down"));
    const all = [...this.live.keys()];
    for (const s of all) this.drop(s);
  }

  private newWorker(): Worker {
    const heapMb = Math.max(256, Math.min(16384, Math.round(this.hostBudget / 2 ** 20)));
    return new Worker(WORKER_URL, {
      resourceLimits: { maxOldGenerationSizeMb: heapMb },
      stdout: false,
      stderr: false,
    });
  }

  /** The spare worker (or a new one), and a new spare loading for the next boot. */
  private takeWorker(): Worker {
    const w = this.spare ?? this.newWorker();
    w.removeAllListeners();
    w.ref();
    this.spare = null;
    setImmediate(() => this.warm());
    return w;
  }

  /** Load a spare worker now (the page asks for its options when it opens: a boot will follow). */
  warm(): void {
    {
      if (this.closed || this.spare) return;
      const s = this.newWorker();
      const lost = () => {
        if (this.spare === s) this.spare = null;
      };
      s.on("error", lost);
      s.on("exit", lost);
      s.unref();
      this.spare = s;
    }
  }

  private keep(session: string, worker: Worker): void {
    const live: Live = { worker, next: 0, pending: new Map() };
    worker.removeAllListeners("message");
    worker.removeAllListeners("error");
    worker.removeAllListeners("exit");
    worker.on("message", (msg: WorkerMessage) => {
      if (msg.type !== "reply") return;
      const p = live.pending.get(msg.id);
      live.pending.delete(msg.id);
      p?.(msg.reply);
    });
    const gone = () => {
      if (this.live.get(session) === live) this.live.delete(session);
      for (const p of live.pending.values())
        p(err(503, "SESSION_DIED", "the session's worker stopped (out of memory?): boot again"));
      live.pending.clear();
    };
    worker.on("error", gone);
    worker.on("exit", gone);
    this.live.set(session, live);
    while (this.live.size > this.sessions) this.drop(this.live.keys().next().value as string);
  }

  private drop(session: string): void {
    const live = this.live.get(session);
    if (!live) return;
    this.live.delete(session);
    void live.worker.terminate();
  }

  private end(run: Running, reason: EndReason, reply: ApiReply): void {
    if (!this.running.has(run)) return;
    run.finish(reply);
    void run.worker.terminate().then(() => this.emit("boot-ended", reason));
  }

  private sample(): void {
    const rss = process.memoryUsage.rss();
    for (const r of this.running)
      if (rss - r.rss0 > this.hostBudget)
        this.end(
          r,
          "memory",
          err(
            503,
            "HOST_MEMORY",
            `the boot (${r.what}) grew the server's memory by ${gib(rss - r.rss0)}, past its ${gib(this.hostBudget)} budget, and was stopped: try a smaller map or a design with less metadata (bitmap)`,
          ),
        );
  }
}
