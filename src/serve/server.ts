/**
 * The explorer's HTTP server: node:http on 127.0.0.1 only. It serves the built page from web/dist and
 * the JSON API (api.ts). Requests whose Host header names anything but this loopback address are
 * refused (a page on another site cannot reach the API through DNS rebinding), and so are peers that
 * are not loopback. Boots run in worker threads (host.ts), never on this event loop. Whatever a
 * request holds (malformed percent-escapes, odd methods, bodies of any size or shape), it gets an HTTP
 * answer with a short JSON (or, from the HTTP parser, text) error, and the server stays up.
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import { bootRequestOf, errorReply, options } from "./api.ts";
import { DIST_DIR } from "./build.ts";
import { BootHost, type HostOptions } from "./host.ts";
import type { BootRequest } from "./session.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** Largest request body read (a pasted or uploaded map is at most 4 MiB, base64 adds a third). */
export const MAX_BODY = 8 << 20;
/** After a 413, at most this many more body bytes are read (and dropped) before the connection closes. */
const DRAIN_LIMIT = 256 << 20;

export interface ServeOptions extends HostOptions {
  port: number;
  /** Folder of the built page (default web/dist). */
  distDir?: string;
  /** Called once per request, for logs. */
  onRequest?: (method: string, url: string, status: number, ms: number) => void;
}

const HEADERS = { "cache-control": "no-store", "x-content-type-options": "nosniff" };

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), ...HEADERS });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(body));
}

function sendError(res: ServerResponse, status: number, code: string, message: string): number {
  sendJson(res, status, { error: { code, message } });
  return status;
}

type Body = { text: string } | { tooLarge: true };

/**
 * Read a request body of at most MAX_BODY bytes. A larger one resolves at once as tooLarge (so the 413
 * goes out while the client still sends), and the rest is read and dropped, so that the client gets
 * the answer instead of a reset; past DRAIN_LIMIT more bytes the connection is closed.
 */
function readBody(req: IncomingMessage): Promise<Body> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const tooLarge = () => {
      over = true;
      chunks.length = 0;
      resolve({ tooLarge: true });
    };
    const declared = Number(req.headers["content-length"]);
    if (declared > MAX_BODY) tooLarge();
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (over) {
        if (size > MAX_BODY + DRAIN_LIMIT) req.socket.destroy();
      } else if (size > MAX_BODY) tooLarge();
      else chunks.push(c);
    });
    req.on("end", () => {
      if (!over) resolve({ text: Buffer.concat(chunks).toString("utf8") });
    });
    req.on("error", () => {
      if (!over) resolve({ tooLarge: true });
    });
  });
}

function isLoopback(addr: string | undefined): boolean {
  return addr === "127.0.0.1" || addr === "::ffff:127.0.0.1" || addr === "::1";
}

/** decodeURIComponent, or null for a malformed escape (%E0%A4%A) instead of a URIError. */
function decodePath(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

async function serveStatic(
  res: ServerResponse,
  dist: string,
  pathname: string,
  head: boolean,
): Promise<number> {
  const decoded = pathname === "/" ? "/index.html" : decodePath(pathname);
  if (decoded === null)
    return sendError(
      res,
      400,
      "BAD_URL",
      "the URL has a malformed percent-escape (expected %XX forming UTF-8)",
    );
  if (decoded.includes("\0")) return sendError(res, 400, "BAD_URL", "the URL names a NUL character");
  const file = normalize(join(dist, decoded.replace(/^\/+/, "")));
  if (!file.startsWith(dist + sep)) return sendError(res, 403, "FORBIDDEN", "path outside the page");
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch {
    return sendError(res, 404, "NOT_FOUND", `no file ${pathname.slice(0, 200)}`);
  }
  res.writeHead(200, {
    "content-type": TYPES[extname(file)] ?? "application/octet-stream",
    "content-length": body.length,
    ...HEADERS,
  });
  res.end(head ? undefined : body);
  return 200;
}

const SESSION_ROUTES = new Set(["/api/frames", "/api/frame", "/api/walk", "/api/table"]);
const API_ROUTES: Record<string, string> = {
  "/api/health": "GET",
  "/api/options": "GET",
  "/api/boot": "POST",
  "/api/frames": "GET",
  "/api/frame": "GET",
  "/api/walk": "GET",
  "/api/table": "GET",
};

/** Start the server; resolves once it listens, with its address (port 0 picks a free port). */
export function startServer(
  opts: ServeOptions,
): Promise<{ server: Server; url: string; port: number; host: BootHost }> {
  const host = new BootHost(opts);
  const dist = normalize(opts.distDir ?? DIST_DIR);
  let port = 0;

  const api = async (
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    url: URL,
    body: Body,
  ): Promise<number> => {
    const path = url.pathname;
    const allowed = API_ROUTES[path];
    if (allowed === undefined)
      return sendError(res, 404, "NOT_FOUND", `no API route ${method} ${path.slice(0, 100)}`);
    if (method !== allowed) {
      res.setHeader("allow", allowed);
      return sendError(res, 405, "METHOD", `${path} answers ${allowed}, not ${method}`);
    }
    if (path === "/api/health") {
      sendJson(res, 200, { ok: true, boots: host.runningBoots, workers: host.liveWorkers });
      return 200;
    }
    if (path === "/api/options") {
      host.warm();
      sendJson(res, 200, options());
      return 200;
    }
    if (SESSION_ROUTES.has(path)) {
      const session = url.searchParams.get("session") ?? "";
      if (!/^[0-9a-f]{16}$/.test(session))
        return sendError(res, 400, "BAD_REQUEST", "session: session must be a boot session id");
      const reply = await host.query(session, method, path, url.search);
      sendJson(res, reply.status, reply.body);
      return reply.status;
    }
    // POST /api/boot
    if ("tooLarge" in body)
      return sendError(res, 413, "TOO_LARGE", `the request is larger than ${MAX_BODY >> 20} MiB`);
    let json: unknown;
    try {
      json = body.text.trim() === "" ? {} : JSON.parse(body.text);
    } catch {
      return sendError(res, 400, "BAD_JSON", "the request body is not JSON");
    }
    let bootReq: BootRequest;
    try {
      bootReq = bootRequestOf(json);
    } catch (e) {
      const r = errorReply(e);
      sendJson(res, r.status, r.body);
      return r.status;
    }
    const header = req.headers["x-pagelab-client"];
    const client =
      typeof header === "string" && /^[\w-]{1,64}$/.test(header)
        ? `page ${header}`
        : `peer ${req.socket.remoteAddress}`;
    return new Promise<number>((resolve) => {
      const cancel = host.boot(client, bootReq, (reply) => {
        if (!res.destroyed) sendJson(res, reply.status, reply.body);
        resolve(reply.status);
      });
      if (cancel)
        res.on("close", () => {
          if (!res.writableFinished) cancel();
        });
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now();
    const method = req.method ?? "GET";
    const hostHeader = req.headers.host ?? "";
    let status = 500;
    try {
      // Every body is read (or, past the limit, answered 413 and drained) before the answer, so that
      // closing the connection never resets it with unread bytes and loses the answer.
      const body = await readBody(req);
      if ("tooLarge" in body) {
        status = sendError(res, 413, "TOO_LARGE", `the request is larger than ${MAX_BODY >> 20} MiB`);
        return;
      }
      if (
        !isLoopback(req.socket.remoteAddress) ||
        (hostHeader !== `127.0.0.1:${port}` && hostHeader !== `localhost:${port}`)
      ) {
        status = sendError(res, 403, "FORBIDDEN", `pagelab serve answers only http://127.0.0.1:${port}/`);
        return;
      }
      let url: URL;
      try {
        url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
        if (!(req.url ?? "/").startsWith("/")) throw new Error("not origin-form");
      } catch {
        status = sendError(res, 400, "BAD_URL", "the request target is not a path (expected /...)");
        return;
      }
      if (url.pathname.startsWith("/api/")) {
        status = await api(req, res, method, url, body);
        return;
      }
      if (method !== "GET" && method !== "HEAD") {
        res.setHeader("allow", "GET, HEAD");
        status = sendError(res, 405, "METHOD", `${method} is not allowed here`);
        return;
      }
      status = await serveStatic(res, dist, url.pathname, method === "HEAD");
    } catch (e) {
      const r = errorReply(e);
      status = r.status;
      if (!res.headersSent && !res.destroyed) sendJson(res, r.status, r.body);
      else res.destroy();
    } finally {
      opts.onRequest?.(method, req.url ?? "", status, performance.now() - t0);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  // A client that asks before sending a large body (Expect: 100-continue) gets the 413 at once.
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
    if (Number(req.headers["content-length"]) > MAX_BODY) {
      res.shouldKeepAlive = false;
      sendError(res, 413, "TOO_LARGE", `the request is larger than ${MAX_BODY >> 20} MiB`);
      opts.onRequest?.(req.method ?? "", req.url ?? "", 413, 0);
      return;
    }
    res.writeContinue();
    void handle(req, res);
  });
  // Requests the HTTP parser refuses (bad method, header too large...) get a short text answer.
  server.on("clientError", (e: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const status = e.code === "HPE_HEADER_OVERFLOW" ? 431 : e.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    const text =
      status === 431 ? "request headers too large" : status === 408 ? "request timeout" : "bad request";
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : status === 408 ? "Request Timeout" : "Bad Request"}\r\ncontent-type: text/plain\r\ncontent-length: ${text.length + 1}\r\nconnection: close\r\n\r\n${text}\n`,
    );
  });
  server.on("close", () => void host.close());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => {
      port = (server.address() as AddressInfo).port;
      resolve({ server, url: `http://127.0.0.1:${port}/`, port, host });
    });
  });
}
