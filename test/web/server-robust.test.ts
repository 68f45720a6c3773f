/**
 * The explorer server against hostile or clumsy requests and heavy boots: malformed URLs, huge and
 * oddly shaped bodies, boots that would run for minutes (they run in worker threads with budgets and
 * are cancelled when the client goes away), and concurrent boots from one client.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootHost, EndReason } from "../../src/serve/host.ts";
import { startServer } from "../../src/serve/server.ts";
import { call, raw } from "./http-helpers.ts";

const health = async (port: number) => JSON.parse((await call(port, "/api/health")).body);

function ended(host: BootHost): Promise<EndReason> {
  return new Promise((resolve) => host.once("boot-ended", resolve));
}

async function until(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 20));
}

describe("pagelab serve under hostile requests", () => {
  let server: Server;
  let port: number;
  let host: BootHost;
  let dist: string;

  beforeAll(async () => {
    dist = mkdtempSync(join(tmpdir(), "pagelab-dist-"));
    mkdirSync(join(dist, "assets"));
    writeFileSync(join(dist, "index.html"), "<!doctype html><title>t</title>");
    // A long boot: qemu:64T with the bitmap runs for minutes; the budget here stops it after 1.5 s.
    const s = await startServer({ port: 0, distDir: dist, bootTimeoutMs: 1500, hostBudget: 8 * 2 ** 30 });
    server = s.server;
    port = s.port;
    host = s.host;
  });

  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
    rmSync(dist, { recursive: true, force: true });
  });

  it("issue #7: a malformed percent-escape in the URL gets 400 and the server stays up", async () => {
    for (const path of ["/%E0%A4%A", "/%", "/assets/%ZZ", "/api/%E0%A4%A", "/%E0%A4%A?x=%E0%A4%A"]) {
      const r = await raw(
        port,
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      );
      expect(r.status, path).toBeGreaterThanOrEqual(400);
      expect(r.status, path).toBeLessThan(500);
      expect(r.body).not.toMatch(/\n\s+at /);
    }
    const r = await raw(
      port,
      `GET /%E0%A4%A HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
    );
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error.code).toBe("BAD_URL");
    expect((await health(port)).ok).toBe(true);
    expect((await call(port, "/")).status).toBe(200);
  });

  it("issue #9: a 100 MB body gets the 413 the server means, not a connection reset", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port,
          path: "/api/boot",
          method: "POST",
          headers: { host: `127.0.0.1:${port}`, "content-type": "application/json" },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < 100) {
          sent++;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
        req.end();
      };
      pump();
    });
    expect(status).toBe(413);
    // A client announcing the size with Expect: 100-continue gets the 413 before sending anything.
    const early = await raw(
      port,
      `POST /api/boot HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 104857600\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
    );
    expect(early.status).toBe(413);
    expect(JSON.parse(early.body).error.code).toBe("TOO_LARGE");
    expect((await health(port)).ok).toBe(true);
  });

  it("issue #9: a JSON array or other non-object body gets 400 naming the object expected", async () => {
    for (const [body, kind] of [
      ["[1, 2]", "an array"],
      ['"qemu:4G"', "a string"],
      ["42", "a number"],
      ["null", "null"],
      ["[]", "an array"],
    ]) {
      const r = await call(port, "/api/boot", { method: "POST", body });
      expect(r.status, body).toBe(400);
      const e = JSON.parse(r.body).error;
      expect(e.message).toMatch(/must be a JSON object/);
      expect(e.message).toContain(`not ${kind}`);
      expect(e.message).not.toMatch(/Function/);
    }
    const typo = await call(port, "/api/boot", { method: "POST", body: '{"map":"qemu:1G","pmn":"bitmap"}' });
    expect(JSON.parse(typo.body).error.message).toMatch(/unknown field 'pmn' \(expected map, .*pmm/);
    const wrong = await call(port, "/api/boot", { method: "POST", body: '{"map":["qemu:1G"]}' });
    expect(JSON.parse(wrong.body).error.message).toMatch(/^map: /);
  });

  it("issue #8: a long boot runs off the event loop (health and the page answer while it runs) and the time budget stops it", async () => {
    const boot = call(port, "/api/boot", {
      method: "POST",
      body: JSON.stringify({ map: "qemu:64T", pmm: "bitmap" }),
    });
    await until(async () => (await health(port)).boots === 1);
    const h = await health(port);
    expect(h).toMatchObject({ ok: true, boots: 1 });
    expect((await call(port, "/")).status).toBe(200);
    expect((await call(port, "/api/options")).status).toBe(200);
    const why = ended(host);
    const r = await boot;
    expect(await why).toBe("timeout");
    expect(r.status).toBe(503);
    const e = JSON.parse(r.body).error;
    expect(e.code).toBe("BOOT_TIMEOUT");
    expect(e.message).toMatch(/qemu:64T, bitmap.*longer than the server's 1\.5 s budget/);
    await until(async () => host.runningBoots === 0);
    expect((await health(port)).boots).toBe(0);
  });

  it("issue #8: a boot whose host-memory estimate is over the budget is refused up front", async () => {
    const r = await call(port, "/api/boot", {
      method: "POST",
      body: JSON.stringify({ map: "qemu:64T", pmm: "freelist" }),
    });
    expect(r.status).toBe(400);
    const e = JSON.parse(r.body).error;
    expect(e.code).toBe("HOST_MEMORY");
    expect(e.message).toMatch(/the budget is 8\.0 GiB/);
    expect(e.message).not.toMatch(/--/);
  });

  it("issue #8: closing the request cancels the boot and terminates its worker", async () => {
    const before = host.liveWorkers;
    const req = request({
      host: "127.0.0.1",
      port,
      path: "/api/boot",
      method: "POST",
      headers: { host: `127.0.0.1:${port}` },
    });
    req.on("error", () => {});
    req.end(JSON.stringify({ map: "qemu:64T", pmm: "bitmap" }));
    await until(async () => host.runningBoots === 1);
    expect(host.liveWorkers).toBe(before + 1);
    const why = ended(host);
    req.destroy();
    expect(await why).toBe("client-gone");
    expect(host.runningBoots).toBe(0);
    expect(host.liveWorkers).toBe(before);
    expect((await health(port)).ok).toBe(true);
  });

  it("issue #8: a second boot from the same client while the first runs is refused with 409 and the reason", async () => {
    const headers = { "x-pagelab-client": "tab-1" };
    const body = JSON.stringify({ map: "qemu:64T", pmm: "bitmap" });
    const first = request({
      host: "127.0.0.1",
      port,
      path: "/api/boot",
      method: "POST",
      headers: { host: `127.0.0.1:${port}`, ...headers },
    });
    first.on("error", () => {});
    first.end(body);
    await until(async () => host.runningBoots === 1);
    const second = await call(port, "/api/boot", { method: "POST", body, headers });
    expect(second.status).toBe(409);
    const e = JSON.parse(second.body).error;
    expect(e.code).toBe("BOOT_RUNNING");
    expect(e.message).toMatch(/already running \(qemu:64T, bitmap/);
    const why = ended(host);
    first.destroy();
    expect(await why).toBe("client-gone");
  });
});
