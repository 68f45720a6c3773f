/**
 * Each input format on real or hand-made data: the three whole QEMU boot logs end to end (through the
 * CLI), the other-maps corpus (Limine, UEFI shell, Xen hvmloader, u-root), sysfs and iomem dumps of the
 * QEMU guests, presets, detection, and error messages that name the line or byte offset.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { detectFormat, parseAs } from "../../src/firmware/detect.ts";
import { parseDmesg } from "../../src/firmware/dmesg.ts";
import { parseE820Bin } from "../../src/firmware/e820-bin.ts";
import { E820, e820TypeName } from "../../src/firmware/e820-types.ts";
import { emitMap } from "../../src/firmware/emit.ts";
import { usableFrameRanges, usablePages } from "../../src/firmware/frames.ts";
import { loadBytes, loadMap } from "../../src/firmware/load.ts";
import { memblockMemory } from "../../src/firmware/memblock.ts";
import { parseMultiboot2 } from "../../src/firmware/multiboot2.ts";
import { parseOwnYaml } from "../../src/firmware/own-json.ts";
import { getPreset, PRESETS } from "../../src/firmware/presets.ts";
import { parseUefiShell } from "../../src/firmware/uefi.ts";
import { FIXTURES } from "./corpus.ts";

const QEMU = ["pc-4g", "numa2-q35-6g", "ovmf-q35-512m-noefidebug"];
const enc = (s: string) => new TextEncoder().encode(s);
const words = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

function thrown(f: () => unknown): PagelabError {
  try {
    f();
  } catch (e) {
    if (e instanceof PagelabError) return e;
    throw e;
  }
  throw new Error("expected a PagelabError");
}

describe("the three QEMU boot logs, end to end", () => {
  for (const name of QEMU) {
    it(`${name}: 'map --memblock' prints the log's own Early memory node ranges`, () => {
      const log = readFileSync(`${FIXTURES}qemu/${name}.log`, "utf8");
      const want = log
        .split("\n")
        .map((l) => l.replace(/\r$/, "").replace(/^\[ *\d+\.\d+\] /, ""))
        .filter((l) => /^ {2}node +\d+: \[mem /.test(l));
      expect(want.length).toBeGreaterThan(0);
      const out = execFileSync(
        "node",
        ["bin/pagelab.mjs", "map", `${FIXTURES}qemu/${name}.log`, "--memblock"],
        {
          encoding: "utf8",
          env: { ...process.env, NO_COLOR: "1" },
        },
      );
      const lines = out.split("\n");
      const at = lines.indexOf("Early memory node ranges");
      expect(lines.slice(at + 1, at + 1 + want.length)).toEqual(want);
      const memory = /Memory: \d+K\/(\d+)K available/.exec(log);
      expect(out).toContain(`(${memory?.[1]}K, the B of`);
    });
  }

  it("the JSON of --memblock has the contract's shape", () => {
    const out = execFileSync(
      "node",
      ["bin/pagelab.mjs", "map", `${FIXTURES}qemu/numa2-q35-6g.log`, "--memblock", "--json"],
      {
        encoding: "utf8",
      },
    );
    expect(JSON.parse(out)).toEqual({
      memblock: [
        { node: 0, start: "0x1000", end: "0x9efff" },
        { node: 0, start: "0x100000", end: "0x7ffdefff" },
        { node: 0, start: "0x100000000", end: "0x13fffffff" },
        { node: 1, start: "0x140000000", end: "0x1ffffffff" },
      ],
      presentPages: 1572733,
    });
  });

  it("an edit printed after memblock setup (OVMF's EFI reservation) does not change memblock.memory", () => {
    const map = loadMap(`${FIXTURES}qemu/ovmf-q35-512m-noefidebug.log`);
    const late = map.log?.edits.find((e) => e.start === 0x1dc60000n);
    expect(late?.beforeMemblock).toBe(false);
    expect(memblockMemory(map).changes.some((c) => c.message.includes("after memblock setup"))).toBe(true);
  });
});

describe("sysfs and iomem dumps of the QEMU guests equal their BIOS-e820 tables", () => {
  for (const name of QEMU) {
    const rec = JSON.parse(readFileSync(`${FIXTURES}qemu/${name}.json`, "utf8"));
    const bios = loadMap(`${FIXTURES}qemu/${name}.log`).entries;
    it(`${name}: sysfs`, () => {
      const dump = (
        rec.sysfs_firmware_memmap as { index: number; start: string; end: string; type: string }[]
      )
        .flatMap((e) => [
          `/sys/firmware/memmap/${e.index}/end:${e.end}`,
          `/sys/firmware/memmap/${e.index}/start:${e.start}`,
          `/sys/firmware/memmap/${e.index}/type:${e.type}`,
        ])
        .join("\n");
      expect(detectFormat(enc(dump))).toBe("sysfs");
      expect(loadBytes(enc(dump)).entries).toEqual(bios);
    });
    it(`${name}: iomem has the table after Linux's edits (page 0 reserved, legacy hole gone)`, () => {
      expect((rec.iomem as string[]).length).toBeGreaterThan(0);
      const m = loadBytes(enc((rec.iomem as string[]).join("\n")));
      expect(m.format).toBe("iomem");
      expect(m.entries[0]).toEqual({ start: 0n, end: 0xfffn, type: E820.RESERVED });
      // iomem also shows the edits Linux made after memblock setup (OVMF: a 9-page EFI reservation).
      const log = loadMap(`${FIXTURES}qemu/${name}.log`);
      const late = (log.log?.edits ?? []).filter((e) => !e.beforeMemblock && e.toType === E820.RESERVED);
      const latePages = late.reduce((n, e) => n + Number((e.end + 1n - e.start) / 4096n), 0);
      expect(usablePages(m)).toBe(memblockMemory(log).presentPages - latePages);
    });
  }

  it("iomem read without root (all zeros) is refused with the reason", () => {
    const e = thrown(() => loadBytes(enc("00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n")));
    expect(e.code).toBe("IOMEM_HIDDEN");
    expect(e.message).toContain("as root");
  });
});

describe("other-maps corpus", () => {
  it("Limine (rounded sizes): bootloader-reclaimable and kernel are reserved, usable RAM kept", () => {
    const m = loadMap(`${FIXTURES}other-maps/limine-qemu-256M-issue505.txt`);
    expect(m.format).toBe("limine");
    expect(m.entries.find((e) => e.start === 0xfd00000000n)).toEqual({
      start: 0xfd00000000n,
      end: 0xfd00000000n + (12n << 30n) - 1n,
      type: E820.RESERVED,
    });
    expect(m.changes.filter((c) => c.message.includes("rounded units")).length).toBe(14);
  });

  it("Limine (exact values): 13 entries, types converted", () => {
    const m = loadMap(`${FIXTURES}other-maps/limine-qemu-2G-issue517-partial.txt`);
    expect(usableFrameRanges(m)[0]).toEqual({ start: 0x52, end: 0x9f, node: 0 });
    expect(m.changes.filter((c) => c.kind === "converted").length).toBe(6);
  });

  it("UEFI shell (OVMF 128 MiB): converted like the EFI stub", () => {
    const m = loadMap(`${FIXTURES}other-maps/uefi-shell-memmap-ovmf-qemu-128M.txt`);
    // Available + BS + Loader pages of the shell's own summary: 22674 + 670 + 7819 + 209.
    expect(usablePages(m)).toBe(22674 + 670 + 7819 + 209);
    const kept = loadMap(`${FIXTURES}other-maps/uefi-shell-memmap-ovmf-qemu-128M.txt`, {
      keepBootServices: true,
    });
    expect(usablePages(kept)).toBe(22674 + 209);
  });

  it("UEFI shell (real PC, unsorted): sorted and reported", () => {
    const m = loadMap(`${FIXTURES}other-maps/uefi-shell-memmap-real-pc-4G-unsorted.txt`);
    expect(m.changes.some((c) => c.kind === "sorted")).toBe(true);
    expect(usablePages(m)).toBe(969334 + 1613 + 47748 + 401 + 256);
  });

  it("Xen hvmloader (end exclusive, numeric types) and u-root (ACPI NVS over the legacy hole)", () => {
    const xen = loadMap(`${FIXTURES}other-maps/xen-hvmloader-e820-XenGT-issue7.txt`);
    expect(xen.entries[0]).toEqual({ start: 0n, end: 0x9fbffn, type: E820.RAM });
    expect(xen.entries.at(-1)).toEqual({ start: 0xfe000000n, end: 0xffffffffn, type: E820.RESERVED });
    const uroot = loadMap(`${FIXTURES}other-maps/uroot-multiboot-kexec-e820-issue1149-partial.txt`);
    expect(uroot.entries.find((e) => e.start === 0xa0000n)?.type).toBe(E820.NVS);
  });
});

describe("binary formats and their errors", () => {
  it("E820: a truncated table names the byte offset", () => {
    const e = thrown(() => parseE820Bin(new Uint8Array(50), "t.bin"));
    expect(e.message).toContain("t.bin: byte offset 48");
    expect(e.message).toContain("20- or 24-byte");
  });

  it("Multiboot2: tag 6 stepped by entry_size (32 here), and the basic meminfo fallback", () => {
    const b = new DataView(new ArrayBuffer(16 + 2 * 32));
    b.setUint32(0, 6, true);
    b.setUint32(4, 80, true);
    b.setUint32(8, 32, true);
    b.setBigUint64(16, 0n, true);
    b.setBigUint64(24, 0x9fc00n, true);
    b.setUint32(32, 1, true);
    b.setBigUint64(48, 0x100000n, true);
    b.setBigUint64(56, 0x100000n, true);
    b.setUint32(64, 9, true);
    const m = parseMultiboot2(new Uint8Array(b.buffer));
    expect(m.entries).toEqual([
      { start: 0n, end: 0x9fbffn, type: E820.RAM },
      { start: 0x100000n, end: 0x1fffffn, type: E820.RESERVED },
    ]);
    expect(m.changes[0].message).toContain("type 9");
    const mbi = new DataView(new ArrayBuffer(40));
    for (const [i, v] of [40, 0, 4, 16, 639, 1024 * 1023, 0, 8].entries()) mbi.setUint32(i * 4, v, true);
    const basic = parseMultiboot2(new Uint8Array(mbi.buffer));
    expect(basic.entries[1]).toEqual({
      start: 0x100000n,
      end: 0x100000n + 1023n * 1024n * 1024n - 1n,
      type: E820.RAM,
    });
  });

  it("a bad tag size names its offset", () => {
    const mbi = new DataView(new ArrayBuffer(24));
    for (const [i, v] of [24, 0, 6, 999].entries()) mbi.setUint32(i * 4, v, true);
    expect(thrown(() => parseMultiboot2(new Uint8Array(mbi.buffer), "m.bin")).message).toContain(
      "m.bin: byte offset 12",
    );
  });

  it("UEFI binary: soft reserved from EFI_MEMORY_SP, DescriptorSize detected", () => {
    const d = new DataView(new ArrayBuffer(96));
    d.setUint32(0, 7, true);
    d.setBigUint64(24, 16n, true);
    d.setUint32(48, 7, true);
    d.setBigUint64(56, 0x10000n, true);
    d.setBigUint64(72, 16n, true);
    d.setBigUint64(80, 0x40000n | 0xfn, true);
    const m = loadBytes(new Uint8Array(d.buffer));
    expect(m.format).toBe("uefi");
    expect(m.entries.map((e) => e820TypeName(e.type))).toEqual(["usable", "soft reserved"]);
  });
});

describe("text formats: errors name the line", () => {
  it("a malformed BIOS-e820 line", () => {
    const e = thrown(() =>
      parseDmesg("BIOS-e820: [mem 0x0-0x9ffff] usable\nBIOS-e820: [mem 0x100000-] usable\n", "boot.log"),
    );
    expect(e.message).toMatch(/^boot\.log:2: expected 'BIOS-e820: \[mem 0xSTART-0xEND\] TYPE'/);
  });

  it("an unknown type word", () => {
    expect(thrown(() => parseDmesg("BIOS-e820: [mem 0x0-0x9ffff] weird\n", "b")).message).toContain(
      "b:1: unknown E820 type 'weird'",
    );
  });

  it("a UEFI row whose End disagrees with its page count", () => {
    const row = "Available  0000000000001000-0000000000002FFF 0000000000000001 000000000000000F";
    expect(thrown(() => parseUefiShell(row, "m.txt")).message).toContain(
      "m.txt:1: End 0x2fff does not match",
    );
  });

  it("YAML: a path-qualified schema error with its line", () => {
    const yaml =
      "entries:\n  - start: 0x0\n    end: 0x9ffff\n    type: usable\n  - start: 0x100000\n    end: zzz\n    type: usable\n";
    const e = thrown(() => parseOwnYaml(yaml, "m.yaml"));
    expect(e.message).toBe("m.yaml:6: entries[1].end: expected 0x hex or decimal, at most 64 bits");
  });

  it("JSON from map --json reads back", () => {
    const json = execFileSync("node", ["bin/pagelab.mjs", "map", "qemu-q35:5G", "--json"], {
      encoding: "utf8",
    });
    const parsed = JSON.parse(json);
    expect(Object.keys(parsed)).toEqual(["format", "entries", "usableBytes", "usablePages", "changes"]);
    expect(loadBytes(enc(json)).entries).toEqual(getPreset("qemu-q35:5G").entries);
  });

  it("unknown formats list what is accepted", () => {
    expect(thrown(() => detectFormat(enc("hello\n"), "x.txt")).message).toContain(
      "name it with --format, one of dmesg, sysfs",
    );
  });
});

describe("presets", () => {
  it("qemu:4G is the real SeaBIOS table of corpus/qemu/pc-4g.log", () => {
    expect(getPreset("qemu:4G").entries).toEqual(loadMap(`${FIXTURES}qemu/pc-4g.log`).entries);
  });

  it("numa:2x3G with q35 equals the real two-node QEMU boot (table and node ranges)", () => {
    const preset = getPreset("numa:2x3G");
    const log = loadMap(`${FIXTURES}qemu/numa2-q35-6g.log`);
    expect(preset.entries).toEqual(log.entries);
    expect(memblockMemory(preset).ranges).toEqual(memblockMemory(log).ranges);
  });

  it("ovmf:512M is the OVMF guest's table; sparse spans 130 TiB", () => {
    expect(getPreset("ovmf:512M").entries).toEqual(
      loadMap(`${FIXTURES}qemu/ovmf-q35-512m-noefidebug.log`).entries,
    );
    const sparse = usableFrameRanges(getPreset("sparse"));
    expect(sparse.at(-1)).toEqual({ start: 128 * 2 ** 28, end: 130 * 2 ** 28, node: 0 });
  });

  it("every listed preset loads and converts; a bad name lists the presets", () => {
    for (const p of PRESETS) expect(emitMap(getPreset(p), "uefi").bytes.length, p).toBeGreaterThan(0);
    expect(thrown(() => getPreset("qemu:lots")).message).toContain("size 'lots'");
    expect(thrown(() => loadMap("nosuch")).code).toBe("NO_FILE");
    expect(thrown(() => getPreset("bochs")).message).toContain(
      "qemu:SIZE, qemu-q35:SIZE, ovmf:512M, sparse, numa:NxSIZE",
    );
  });

  it("parseAs and --format agree with detection on an emitted file", () => {
    const out = emitMap(getPreset("qemu:4G"), "limine");
    expect(detectFormat(out.bytes)).toBe("limine-bin");
    expect(parseAs("limine-bin", out.bytes).entries.length).toBe(8);
  });
});

describe("CLI help teaches", () => {
  it("lists formats, presets and examples", () => {
    const help = execFileSync("node", ["bin/pagelab.mjs", "map", "--help"], { encoding: "utf8" });
    for (const w of ["multiboot2", "uefi-bin", "numa:NxSIZE", "Examples:", "--memblock"])
      expect(help).toContain(w);
    expect(words(help).length).toBeGreaterThan(20);
  });
});
