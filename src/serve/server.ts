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
import type { Duplex } from "node:stream";
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

/** What the request handlers share: the boot host, the page folder, the options, and the port once bound. */
interface ServerContext {
  host: BootHost;
  dist: string;
  opts: ServeOptions;
  /** 0 until the server listens. */
  port: number;
}

/** Answer GET /api/frames, /api/frame, /api/walk or /api/table from the boot session it names. */
async function answerSession(host: BootHost, res: ServerResponse, method: string, url: URL): Promise<number> {
  const path = url.pathname;
  const session = url.searchParams.get("session") ?? "";
  if (!/^[0-9a-f]{16}$/.test(session))
    return sendError(res, 400, "BAD_REQUEST", "session: session must be a boot session id");
  const reply = await host.query(session, method, path, url.search);
  sendJson(res, reply.status, reply.body);
  return reply.status;
}

/** Who asks for a boot: the page's own client id when it sends a well-formed one, else the peer address. */
function bootClientOf(req: IncomingMessage): string {
  const header = req.headers["x-pagelab-client"];
  return typeof header === "string" && /^[\w-]{1,64}$/.test(header)
    ? `page ${header}`
    : `peer ${req.socket.remoteAddress}`;
}

/** Answer POST /api/boot: parse and check the body, then run the boot (cancelled if the client leaves). */
async function answerBoot(
  host: BootHost,
  req: IncomingMessage,
  res: ServerResponse,
  body: Body,
): Promise<number> {
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
  const client = bootClientOf(req);
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
}

/** Answer a request under /api/: route and method checks, then the route's answer. */
async function answerApi(
  host: BootHost,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  url: URL,
  body: Body,
): Promise<number> {
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
  if (SESSION_ROUTES.has(path)) return answerSession(host, res, method, url);
  // POST /api/boot
  return answerBoot(host, req, res, body);
}

/** The request's URL, or null (after a 400) when its target is not an origin-form path. */
function requestUrl(req: IncomingMessage, res: ServerResponse, port: number): URL | null {
  try {
    const url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
    if (!(req.url ?? "/").startsWith("/")) throw new Error("not origin-form");
    return url;
  } catch {
    sendError(res, 400, "BAD_URL", "the request target is not a path (expected /...)");
    return null;
  }
}

/**
 * Answer one request, after its body is read: the loopback and Host checks, then the API or a page
 * file. Resolves with the status sent.
 */
async function answerRequest(
  ctx: ServerContext,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
): Promise<number> {
  const hostHeader = req.headers.host ?? "";
  // Every body is read (or, past the limit, answered 413 and drained) before the answer, so that
  // closing the connection never resets it with unread bytes and loses the answer.
  const body = await readBody(req);
  if ("tooLarge" in body)
    return sendError(res, 413, "TOO_LARGE", `the request is larger than ${MAX_BODY >> 20} MiB`);
  if (
    !isLoopback(req.socket.remoteAddress) ||
    (hostHeader !== `127.0.0.1:${ctx.port}` && hostHeader !== `localhost:${ctx.port}`)
  )
    return sendError(res, 403, "FORBIDDEN", `pagelab serve answers only http://127.0.0.1:${ctx.port}/`);
  const url = requestUrl(req, res, ctx.port);
  if (url === null) return 400;
  if (url.pathname.startsWith("/api/")) return answerApi(ctx.host, req, res, method, url, body);
  if (method !== "GET" && method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return sendError(res, 405, "METHOD", `${method} is not allowed here`);
  }
  return serveStatic(res, ctx.dist, url.pathname, method === "HEAD");
}

/** Handle one request: answer it (or, on an unexpected error, answer that), then report it to onRequest. */
async function handleRequest(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const t0 = performance.now();
  const method = req.method ?? "GET";
  let status = 500;
  try {
    status = await answerRequest(ctx, req, res, method);
  } catch (e) {
    const r = errorReply(e);
    status = r.status;
    if (!res.headersSent && !res.destroyed) sendJson(res, r.status, r.body);
    else res.destroy();
  } finally {
    ctx.opts.onRequest?.(method, req.url ?? "", status, performance.now() - t0);
  }
}

/** A client that asks before sending a large body (Expect: 100-continue) gets the 413 at once. */
function onCheckContinue(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): void {
  if (Number(req.headers["content-length"]) > MAX_BODY) {
    res.shouldKeepAlive = false;
    sendError(res, 413, "TOO_LARGE", `the request is larger than ${MAX_BODY >> 20} MiB`);
    ctx.opts.onRequest?.(req.method ?? "", req.url ?? "", 413, 0);
    return;
  }
  res.writeContinue();
  void handleRequest(ctx, req, res);
}

/** Requests the HTTP parser refuses (bad method, header too large...) get a short text answer. */
function onClientError(e: NodeJS.ErrnoException, socket: Duplex): void {
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
}

/** Start the server; resolves once it listens, with its address (port 0 picks a free port). */
export function startServer(
  opts: ServeOptions,
): Promise<{ server: Server; url: string; port: number; host: BootHost }> {
  const host = new BootHost(opts);
  const ctx: ServerContext = { host, dist: normalize(opts.distDir ?? DIST_DIR), opts, port: 0 };
  const server = createServer((req, res) => void handleRequest(ctx, req, res));
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => onCheckContinue(ctx, req, res));
  server.on("clientError", onClientError);
  server.on("close", () => void host.close());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => {
      ctx.port = (server.address() as AddressInfo).port;
      resolve({ server, url: `http://127.0.0.1:${ctx.port}/`, port: ctx.port, host });
    });
  });
}
