/**
 * The HTTP face of `pagelab serve`: loopback binding, Host checks, static files from a dist folder,
 * JSON errors; and the page's own type check (web/ has its own tsconfig, outside the root `tsc -p .`).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KMAP_NAMES } from "../../src/kernel/boot/index.ts";
import { startServer } from "../../src/serve/server.ts";

function get(
  port: number,
  path: string,
  opts: { host?: string; method?: string; body?: string } = {},
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: opts.method ?? "GET",
        headers: { host: opts.host ?? `127.0.0.1:${port}`, "content-type": "application/json" },
      },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }),
        );
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

describe("pagelab serve's HTTP server", () => {
  let server: Server;
  let port: number;
  let dist: string;

  beforeAll(async () => {
    dist = mkdtempSync(join(tmpdir(), "pagelab-dist-"));
    mkdirSync(join(dist, "assets"));
    writeFileSync(join(dist, "index.html"), "<!doctype html><title>t</title>");
    writeFileSync(join(dist, "assets", "a.js"), "export {};");
    const s = await startServer({ port: 0, distDir: dist });
    server = s.server;
    port = s.port;
    expect(s.url).toBe(`http://127.0.0.1:${port}/`);
  });

  afterAll(() => {
    server?.close();
    rmSync(dist, { recursive: true, force: true });
  });

  it("listens on the loopback address only", () => {
    expect((server.address() as AddressInfo).address).toBe("127.0.0.1");
  });

  it("serves the page and its assets with their types", async () => {
    const index = await get(port, "/");
    expect(index.status).toBe(200);
    expect(index.type).toMatch(/text\/html/);
    expect((await get(port, "/assets/a.js")).type).toMatch(/javascript/);
    expect((await get(port, "/missing.js")).status).toBe(404);
    expect((await get(port, "/assets/../../../etc/passwd")).status).not.toBe(200);
    expect((await get(port, "/%2e%2e/%2e%2e/etc/passwd")).status).toBe(404);
    expect((await get(port, "/..%2f..%2f..%2fetc%2fpasswd")).status).toBe(403);
  });

  it("refuses requests naming another host (DNS rebinding)", async () => {
    const r = await get(port, "/api/options", { host: "evil.example:80" });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error.code).toBe("FORBIDDEN");
    expect((await get(port, "/api/options", { host: `localhost:${port}` })).status).toBe(200);
  });

  it("answers the API in JSON, errors included", async () => {
    const o = JSON.parse((await get(port, "/api/options")).body);
    expect(o.pmms).toContain("buddy");
    expect(o.kmaps).toEqual(KMAP_NAMES);
    const bad = await get(port, "/api/boot", { method: "POST", body: "{not json" });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe("BAD_JSON");
    const boot = await get(port, "/api/boot", { method: "POST", body: JSON.stringify({ map: "qemu:1G" }) });
    expect(boot.status).toBe(200);
    const s = JSON.parse(boot.body);
    const w = JSON.parse((await get(port, `/api/walk?session=${s.session}&va=0xffffffff80000000`)).body);
    expect(w.pa).toBe(s.kernelPhys);
    expect((await get(port, "/", { method: "DELETE" })).status).toBe(405);
  });
});

describe("web/ (the page's sources)", () => {
  it("type-checks with its own tsconfig", () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    const r = spawnSync(process.execPath, [tsc, "-p", join(root, "web")], { encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
