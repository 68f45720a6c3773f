/**
 * A fuzz of the explorer's HTTP API (fast-check, fixed seed): random paths (malformed percent-escapes
 * included), methods, headers, bodies of every shape and size. Every request must get an HTTP answer
 * (no stack trace in it), and the server must answer a health request after each batch.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_BODY, startServer } from "../../src/serve/server.ts";
import { call, raw } from "./http-helpers.ts";

const ROUTES = [
  "/",
  "/index.html",
  "/api/health",
  "/api/options",
  "/api/boot",
  "/api/frames",
  "/api/frame",
  "/api/walk",
  "/api/table",
  "/api/",
  "/api/nope",
];
const BAD_ESCAPES = ["%", "%E0%A4%A", "%ZZ", "%FF", "%00", "%2e%2e", "%C0%AF", "%F0%9F%98", "%%", "%e2%82"];

const segment = fc.oneof(
  fc.constantFrom(...BAD_ESCAPES, "..", ".", "", "assets", "api"),
  fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,12}$/),
);
const path = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(...ROUTES),
      fc.array(segment, { maxLength: 4 }).map((s) => `/${s.join("/")}`),
    ),
    fc.option(fc.array(fc.tuple(segment, segment), { maxLength: 4 }), { nil: undefined }),
  )
  .map(([p, q]) => (q ? `${p}?${q.map(([k, v]) => `${k}=${v}`).join("&")}` : p));

const badValue = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.object({ maxDepth: 1 }),
  fc.double(),
);
/** Boot-shaped objects with at least one field of a wrong type or value. */
const bootish = fc
  .record({
    map: fc.oneof(fc.constantFrom("qemu:4G", "qemu:1K", "", "[ x", "/etc/passwd"), badValue),
    pmm: fc.oneof(fc.constantFrom("buddy", "nope"), badValue),
    format: fc.oneof(fc.constantFrom("auto", "dmesg", "json", "bogus"), badValue),
    levels: fc.oneof(fc.constantFrom(4, 5, 6, "4"), badValue),
    broken: fc.constantFrom("pmm", "format", "levels", "extra"),
  })
  .map(({ broken, ...b }) => {
    const o: Record<string, unknown> = { ...b };
    if (broken === "extra") o.surprise = 1;
    else o[broken] = { wrong: true };
    return JSON.stringify(o);
  });
const body = fc.oneof(
  { weight: 3, arbitrary: fc.json() },
  { weight: 3, arbitrary: bootish },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.constantFrom("", "{", "[1,2]", '{"map":', "\u0000", "{}") },
  {
    weight: 1,
    arbitrary: fc.constantFrom(MAX_BODY + 1, 2 * MAX_BODY, 200_000).map((n) => Buffer.alloc(n, 0x61)),
  },
);
const method = fc.constantFrom("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "FOO", "G@T");
const headers = fc.array(
  fc.oneof(
    fc.constantFrom(
      "Content-Type: application/json",
      "Content-Type: text/plain; charset=latin1",
      "Content-Encoding: gzip",
      "Expect: 100-continue",
      "X-Pagelab-Client: ../../x",
      "X-Pagelab-Client: tab-9",
      "Accept-Encoding: br",
      `X-Big: ${"a".repeat(20_000)}`,
      "Bad Header: x",
      "Host: evil.example",
    ),
    fc
      .tuple(fc.stringMatching(/^[A-Za-z-]{1,10}$/), fc.stringMatching(/^[ -~]{0,20}$/))
      .map(([k, v]) => `X-${k}: ${v}`),
  ),
  { maxLength: 3 },
);
const chunked = fc.boolean();

function requestBytes(
  port: number,
  m: string,
  p: string,
  hs: string[],
  b: string | Buffer,
  ch: boolean,
): Buffer {
  const bytes = typeof b === "string" ? Buffer.from(b) : b;
  const hasHost = hs.some((h) => h.toLowerCase().startsWith("host:"));
  const lines = [
    `${m} ${p} HTTP/1.1`,
    ...(hasHost ? [] : [`Host: 127.0.0.1:${port}`]),
    ...hs,
    "Connection: close",
  ];
  if (ch && bytes.length > 0) {
    lines.push("Transfer-Encoding: chunked");
    return Buffer.concat([
      Buffer.from(`${lines.join("\r\n")}\r\n\r\n${bytes.length.toString(16)}\r\n`),
      bytes,
      Buffer.from("\r\n0\r\n\r\n"),
    ]);
  }
  lines.push(`Content-Length: ${bytes.length}`);
  return Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`), bytes]);
}

describe("fuzz of the explorer's HTTP API", () => {
  let server: Server;
  let port: number;
  let dist: string;

  beforeAll(async () => {
    dist = mkdtempSync(join(tmpdir(), "pagelab-dist-"));
    writeFileSync(join(dist, "index.html"), "<!doctype html><title>t</title>");
    const s = await startServer({ port: 0, distDir: dist, bootTimeoutMs: 3000 });
    server = s.server;
    port = s.port;
  });

  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
    rmSync(dist, { recursive: true, force: true });
  });

  it("answers every request with a short HTTP error or success and stays up", async () => {
    const byStatus: Record<number, number> = {};
    let tried = 0;
    const batches = fc.sample(
      fc.array(fc.tuple(method, path, headers, body, chunked), { minLength: 10, maxLength: 10 }),
      { seed: 1105, numRuns: 30 },
    );
    for (const batch of batches) {
      const answers = await Promise.all(
        batch.map(([m, p, hs, b, ch]) => raw(port, requestBytes(port, m, p, hs, b, ch))),
      );
      for (const [i, a] of answers.entries()) {
        tried++;
        byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
        const [m, p] = batch[i];
        expect(a.status, `${m} ${p}`).toBeGreaterThanOrEqual(200);
        expect(a.body, `${m} ${p}`).not.toMatch(/\n\s+at |node:internal|\.ts:\d+/);
        expect(a.body.length, `${m} ${p}`).toBeLessThan(200_000);
      }
      const h = await call(port, "/api/health");
      expect(h.status).toBe(200);
    }
    console.log(`fuzz: ${tried} requests, answers by status ${JSON.stringify(byStatus)}, crashes 0`);
    expect(tried).toBe(300);
  });
});
