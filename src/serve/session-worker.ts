/**
 * A boot session in its own worker thread (started by host.ts through session-worker.mjs): waits for
 * its boot request (the server keeps one such worker loaded and idle, so that a boot does not wait for
 * the thread to load), boots, posts the summary (or the error), then answers the session's
 * queries (frames, frame, walk, table) until the server terminates it. The server's event loop never
 * runs a boot, and a boot over its time or memory budget is ended by terminating this thread.
 */
import { parentPort } from "node:worker_threads";
import { errorReply, handleApi, summary } from "./api.ts";
import { bootSession, type BootRequest, SessionStore } from "./session.ts";

/** From the server: first one boot, then queries. */
export type HostMessage =
  | { type: "boot"; req: BootRequest }
  | { type: "query"; id: number; method: string; path: string; query: string };

export type WorkerMessage =
  | { type: "booted"; session: string; reply: { status: number; body: unknown } }
  | { type: "failed"; reply: { status: number; body: unknown } }
  | { type: "reply"; id: number; reply: { status: number; body: unknown } };

const port = parentPort!;
const store = new SessionStore(1);
port.on("message", (m: HostMessage) => {
  if (m.type === "boot") {
    try {
      const s = bootSession(m.req);
      store.add(s);
      port.postMessage({ type: "booted", session: s.id, reply: { status: 200, body: summary(s) } });
    } catch (e) {
      port.postMessage({ type: "failed", reply: errorReply(e) });
    }
    return;
  }
  const reply = handleApi(store, m.method, m.path, new URLSearchParams(m.query), undefined);
  port.postMessage({ type: "reply", id: m.id, reply });
});
