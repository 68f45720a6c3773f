/**
 * The explorer's API handlers without a socket: boot sessions, frame ownership per boot step, the
 * strip's aggregation, walks, tables, and clear errors for bad input.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { handleApi } from "../../src/serve/api.ts";
import { OWNERS, paint } from "../../src/serve/ownership.ts";
import { SessionStore } from "../../src/serve/session.ts";

// biome-ignore lint/suspicious/noExplicitAny: replies are JSON read by tests
type Json = any;

function call(
  store: SessionStore,
  method: string,
  path: string,
  q: Record<string, string> = {},
  body?: unknown,
) {
  const r = handleApi(store, method, path, new URLSearchParams(q), body);
  return { status: r.status, body: r.body as Json };
}

const owner = (name: string) => OWNERS.indexOf(name as (typeof OWNERS)[number]);

describe("paint", () => {
  it("lets the highest layer win and merges equal neighbours", () => {
    const runs = paint(
      [
        { start: 0, end: 100, prio: 0, owner: 8, note: 0 },
        { start: 10, end: 50, prio: 2, owner: 0, note: 1 },
        { start: 20, end: 21, prio: 6, owner: 2, note: 2 },
        { start: 21, end: 22, prio: 6, owner: 2, note: 2 },
      ],
      100,
    );
    expect(runs).toEqual([
      { start: 0, end: 10, owner: 8, note: 0 },
      { start: 10, end: 20, owner: 0, note: 1 },
      { start: 20, end: 22, owner: 2, note: 2 },
      { start: 22, end: 50, owner: 0, note: 1 },
      { start: 50, end: 100, owner: 8, note: 0 },
    ]);
  });
});

describe("API on qemu:4G, buddy, direct", () => {
  const store = new SessionStore(2);
  let boot: Json;
  let id: string;

  beforeAll(() => {
    const r = call(
      store,
      "POST",
      "/api/boot",
      {},
      { map: "qemu:4G", pmm: "buddy", kmap: "direct", levels: 4 },
    );
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    boot = r.body;
    id = boot.session;
  });

  it("summarises the boot", () => {
    expect(boot.map).toBe("qemu:4G");
    expect(boot.bootSteps).toHaveLength(7);
    expect(boot.counters.memReads).toBeGreaterThan(0);
    expect(boot.layout.directMap).toBe("0xffff888000000000");
    expect(boot.strip.ramTop).toBe(0x140000);
    expect(boot.strip.spanEnd).toBe(0x10000000000 / 4096);
  });

  it("replays ownership step by step: image at 2, metadata at 4, PMM free lists at the end", () => {
    const t = boot.strip.totals;
    expect(t[0]["kernel-image"]).toBe(0);
    expect(t[0]["page-table"]).toBe(0);
    expect(t[1]["kernel-image"] + t[1]["page-table"]).toBe(512);
    expect(t[2]["pmm-metadata"]).toBe(0);
    expect(t[3]["pmm-metadata"]).toBe(4096);
    expect(t[6].free).toBe(boot.freePagesAfterBoot);
    expect(t[6]["page-table"]).toBe(boot.pageTablePages);
    // Every step covers the same span.
    for (const s of t)
      expect(Object.values(s).reduce((a: number, b) => a + (b as number), 0)).toBe(boot.strip.spanEnd);
  });

  it("aggregates the strip into at most the asked buckets, keeping rare owners visible", () => {
    const r = call(store, "GET", "/api/frames", { session: id, buckets: "200" });
    expect(r.status).toBe(200);
    expect(r.body.items.length).toBeLessThanOrEqual(200);
    const seen = new Set<number>();
    let frames = 0;
    for (const it of r.body.items) {
      for (const [o, n] of it.parts) {
        seen.add(o);
        frames += n;
      }
    }
    expect(frames).toBe(0x140000);
    for (const o of ["free", "kernel-image", "page-table", "pmm-metadata", "reserved", "hole"])
      expect(seen).toContain(owner(o));
  });

  it("returns exact runs when zoomed in", () => {
    const r = call(store, "GET", "/api/frames", { session: id, from: "4096", to: "4608", buckets: "800" });
    const image = r.body.items.filter((i: Json) => i.parts[0][0] === owner("kernel-image"));
    const tables = r.body.items.filter((i: Json) => i.parts[0][0] === owner("page-table"));
    expect(image.length).toBeGreaterThan(0);
    expect(tables[0].note).toMatch(/\.bss/);
    expect(r.body.items[0].s).toBe(4096);
    expect(r.body.items.at(-1).e).toBe(4608);
  });

  it("explains a frame with the sanitizer's decisions and where it is mapped", () => {
    const f0 = call(store, "GET", "/api/frame", { session: id, pfn: "0" }).body;
    expect(f0.owner).toBe("reserved");
    expect(f0.changes.map((c: Json) => c.message).join("\n")).toMatch(/trim_bios_range/);
    const img = call(store, "GET", "/api/frame", { session: id, pfn: String(0x1000) }).body;
    expect(img.owner).toBe("kernel-image");
    expect(img.mappedAt).toEqual(["0xffff888001000000", "0xffffffff80000000"]);
    const step1 = call(store, "GET", "/api/frame", { session: id, pfn: String(0x1000), step: "1" }).body;
    expect(step1.owner).toBe("free");
  });

  it("walks from CR3: PML4E 273, then down to the page; 1 GiB pages where RAM fills a gigabyte", () => {
    const w = call(store, "GET", "/api/walk", { session: id, va: "0xffff888000001000" }).body;
    expect(w.steps[0]).toMatchObject({ entry: "PML4E", index: 273 });
    expect(w.pa).toBe("0x1000");
    // The first GiB holds the legacy hole, so the direct map uses 4 KiB pages there.
    expect(w.pageSize).toBe("4K");
    const g = call(store, "GET", "/api/walk", { session: id, va: "0xffff888040001000" }).body;
    expect(g.steps.map((s: Json) => s.entry)).toEqual(["PML4E", "PDPTE"]);
    expect(g.pageSize).toBe("1G");
    expect(g.pa).toBe("0x40001000");
  });

  it("decodes a table's 512 entries and opens the next level", () => {
    const root = call(store, "GET", "/api/table", { session: id }).body;
    expect(root.level).toBe(4);
    expect(root.entries).toHaveLength(512);
    const e = root.entries[273];
    expect(e).toMatchObject({ present: true, leaf: false, va: "0xffff888000000000" });
    const pdpt = call(store, "GET", "/api/table", { session: id, pa: e.target, level: "3", base: e.va }).body;
    expect(pdpt.name).toBe("PDPTE");
    const big = pdpt.entries[1];
    expect(big).toMatchObject({ leaf: true, size: "1G", target: "0x40000000", va: "0xffff888040000000" });
    expect(big.bits).toMatchObject({ P: true, RW: true, PS: true, NX: true, US: false });
  });

  it("answers bad input with clear errors", () => {
    const bad = (q: Record<string, string>, path = "/api/walk") => call(store, "GET", path, q);
    expect(bad({ session: id, va: "0x800000000000" }).body.error.code).toBe("NON_CANONICAL");
    expect(bad({ session: id, va: "zzz" }).body.error.code).toBe("BAD_ADDRESS");
    expect(bad({ session: "0123456789abcdef", va: "0" })).toMatchObject({
      status: 404,
      body: { error: { code: "NO_SESSION" } },
    });
    expect(bad({ session: "../x", va: "0" }).body.error.message).toMatch(/session/);
    expect(bad({ session: id, pa: "0x1001" }, "/api/table").body.error.message).toMatch(/aligned/);
    expect(bad({ session: id, level: "9" }, "/api/table").body.error.message).toMatch(/level must be 1\.\.4/);
    expect(bad({ session: id, from: "10", to: "5" }, "/api/frames").body.error.code).toBe("BAD_REQUEST");
    expect(bad({ session: id, step: "8", pfn: "0" }, "/api/frame").body.error.message).toMatch(
      /step must be 1\.\.7/,
    );
    expect(call(store, "GET", "/api/nope").status).toBe(404);
  });
});

describe("boot requests", () => {
  it("refuses file paths (only presets, pasted text or uploads) and unknown designs", () => {
    const store = new SessionStore(1);
    const r = call(store, "POST", "/api/boot", {}, { map: "/etc/passwd" });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("UNKNOWN_FORMAT");
    const p = call(store, "POST", "/api/boot", {}, { map: "qemu:4G", pmm: "nope", levels: 6 });
    expect(p.body.error.message).toMatch(/pmm must be one of .*buddy.*levels must be 4 or 5/);
    expect(call(store, "POST", "/api/boot", {}, {}).body.error.message).toMatch(/choose a preset/);
    expect(call(store, "POST", "/api/boot", {}, { map: "qemu:1K" }).body.error.code).toBe("BAD_PRESET");
  });

  it("boots a pasted dmesg table and an uploaded one; keeps only the newest sessions", () => {
    const store = new SessionStore(1);
    const text = [
      "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
      "BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved",
      "BIOS-e820: [mem 0x0000000000100000-0x000000003fffffff] usable",
    ].join("\n");
    const a = call(store, "POST", "/api/boot", {}, { map: text, pmm: "bitmap", kmap: "recursive" });
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    expect(a.body.map).toBe("pasted map");
    expect(a.body.kmap).toBe("recursive");
    const b = call(
      store,
      "POST",
      "/api/boot",
      {},
      {
        mapBase64: Buffer.from(text).toString("base64"),
        mapName: "../../dmesg.txt",
      },
    );
    expect(b.body.map).toBe("upload: dmesg.txt");
    expect(store.size).toBe(1);
    expect(call(store, "GET", "/api/walk", { session: a.body.session, va: "0" }).body.error.code).toBe(
      "NO_SESSION",
    );
  });

  it("keeps a 16 GiB map's strip queries fast", () => {
    const store = new SessionStore(1);
    const r = call(store, "POST", "/api/boot", {}, { map: "qemu:16G" });
    expect(r.status).toBe(200);
    const t0 = performance.now();
    for (let step = 1; step <= 7; step++) {
      const f = call(store, "GET", "/api/frames", {
        session: r.body.session,
        step: String(step),
        from: "0",
        to: String(r.body.strip.spanEnd),
        buckets: "1000",
      });
      expect(f.body.items.length).toBeLessThanOrEqual(1000);
    }
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.body.serverMs.ownership).toBeLessThan(1000);
  });
});

describe("pasted maps and the format chooser", () => {
  const dmesg = [
    "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
    "[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved",
    "[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000003fffffff] usable",
  ].join("\n");

  it("issue #1: a pasted dmesg boots with format dmesg chosen, and the options list every format", () => {
    const store = new SessionStore(1);
    const r = call(store, "POST", "/api/boot", {}, { map: dmesg, format: "dmesg", pmm: "bitmap" });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.map).toBe("pasted map");
    const o = call(store, "GET", "/api/options").body;
    expect(o.formats).toEqual(expect.arrayContaining(["auto", "dmesg", "sysfs", "iomem", "json", "yaml"]));
    const bad = call(store, "POST", "/api/boot", {}, { map: dmesg, format: "nope" });
    expect(bad.body.error.message).toMatch(/format must be auto or one of dmesg/);
  });

  it("issue #1: map errors name the pasted input and line, never a temp path or a command-line flag", () => {
    const store = new SessionStore(1);
    const broken = `${dmesg}\nBIOS-e820: [mem 0x0000000040000000-0x00000000zzzzzzzz] usable`;
    const e = call(store, "POST", "/api/boot", {}, { map: broken, format: "dmesg" }).body.error;
    expect(e.message).toMatch(/^pasted map, line 4: /);
    const unknown = call(store, "POST", "/api/boot", {}, { map: "hello\nworld" }).body.error;
    expect(unknown.code).toBe("UNKNOWN_FORMAT");
    expect(unknown.message).toMatch(/^pasted map: .*Format menu/);
    const up = call(
      store,
      "POST",
      "/api/boot",
      {},
      { mapBase64: Buffer.from("x y").toString("base64"), mapName: "m.txt" },
    );
    expect(up.body.error.message).toMatch(/^upload m\.txt: /);
    for (const m of [e.message, unknown.message, up.body.error.message]) {
      expect(m).not.toMatch(/(^|\s)--[a-z]/);
      expect(m).not.toMatch(/\/tmp|pagelab-serve-/);
    }
  });
});
