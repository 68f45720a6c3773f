/**
 * The explorer's HTTP server: node:http on 127.0.0.1 only. It serves the built page from web/dist and
 * the JSON API (api.ts). Requests whose Host header names anything but this loopback address are
 * refused (a page on another site cannot reach the API through DNS rebinding), and so are peers that
 * are not loopback.
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import { handleApi } from "./api.ts";
import { DIST_DIR } from "./build.ts";
import { SessionStore } from "./session.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

const MAX_BODY = 8 << 20;

export interface ServeOptions {
  port: number;
  /** Folder of the built page (default web/dist). */
  distDir?: string;
  sessions?: number;
  /** Called once per request, for logs. */
  onRequest?: (method: string, url: string, status: number, ms: number) => void;
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error("TOO_LARGE"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function isLoopback(addr: string | undefined): boolean {
  return addr === "127.0.0.1" || addr === "::ffff:127.0.0.1" || addr === "::1";
}

async function serveStatic(res: ServerResponse, dist: string, pathname: string): Promise<number> {
  const rel = pathname === "/" ? "index.html" : decodeURIComponent(pathname).replace(/^\/+/, "");
  const file = normalize(join(dist, rel));
  if (!file.startsWith(dist + sep)) {
    sendJson(res, 403, { error: { code: "FORBIDDEN", message: "path outside the page" } });
    return 403;
  }
  try {
    const body = await readFile(file);
    send(res, 200, TYPES[extname(file)] ?? "application/octet-stream", body);
    return 200;
  } catch {
    sendJson(res, 404, { error: { code: "NOT_FOUND", message: `no file ${pathname}` } });
    return 404;
  }
}

/** Start the server; resolves once it listens, with its address (port 0 picks a free port). */
export function startServer(opts: ServeOptions): Promise<{ server: Server; url: string; port: number }> {
  const store = new SessionStore(opts.sessions ?? 4);
  const dist = normalize(opts.distDir ?? DIST_DIR);
  let port = 0;
  const server = createServer(async (req, res) => {
    const t0 = performance.now();
    const method = req.method ?? "GET";
    const host = req.headers.host ?? "";
    let status = 200;
    try {
      if (
        !isLoopback(req.socket.remoteAddress) ||
        (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`)
      ) {
        status = 403;
        sendJson(res, 403, {
          error: { code: "FORBIDDEN", message: `pagelab serve answers only http://127.0.0.1:${port}/` },
        });
        return;
      }
      const url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
      if (url.pathname.startsWith("/api/")) {
        let body: unknown;
        if (method === "POST") {
          try {
            const text = await readBody(req);
            body = text ? JSON.parse(text) : {};
          } catch (e) {
            const big = (e as Error).message === "TOO_LARGE";
            status = big ? 413 : 400;
            sendJson(res, status, {
              error: {
                code: big ? "TOO_LARGE" : "BAD_JSON",
                message: big ? "the request is larger than 8 MiB" : "the request body is not JSON",
              },
            });
            return;
          }
        }
        const reply = handleApi(store, method, url.pathname, url.searchParams, body);
        status = reply.status;
        sendJson(res, reply.status, reply.body);
        return;
      }
      if (method !== "GET" && method !== "HEAD") {
        status = 405;
        sendJson(res, 405, { error: { code: "METHOD", message: `${method} is not allowed here` } });
        return;
      }
      status = await serveStatic(res, dist, url.pathname);
    } finally {
      opts.onRequest?.(method, req.url ?? "", status, performance.now() - t0);
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => {
      port = (server.address() as AddressInfo).port;
      resolve({ server, url: `http://127.0.0.1:${port}/`, port });
    });
  });
}
