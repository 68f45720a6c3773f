/**
 * Every input a user has: detection by content (a dmesg starting with '[' is not JSON), binary
 * formats only when their structure validates (a truncated blob is an error naming its byte offset),
 * standard input as '-', and 100,000-entry tables in O(n log n).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { bar, tableText } from "../../src/cli/commands/map.ts";
import { PagelabError } from "../../src/errors.ts";
import { detectFormat } from "../../src/firmware/detect.ts";
import { emitMap } from "../../src/firmware/emit.ts";
import { loadBytes, MAP_FORMATS, parseMapText } from "../../src/firmware/load.ts";
import { getPreset } from "../../src/firmware/presets.ts";

const enc = new TextEncoder();
const FIX = new URL("../../corpus/qemu/pc-4g.log", import.meta.url);
/** The QEMU boot log without SeaBIOS's preamble: it starts with '[    0.000000] Linux version'. */
const bootLog = readFileSync(FIX, "utf8")
  .split("\n")
  .filter((l) => l.startsWith("["))
  .join("\n");
const expected = parseMapText(bootLog, { name: "boot.log" }).entries;

function thrown(f: () => unknown): PagelabError {
  try {
    f();
  } catch (e) {
    if (e instanceof PagelabError) return e;
    throw e;
  }
  throw new Error("expected a PagelabError");
}

describe("text detected by content, not by its first character", () => {
  it("#1: a dmesg log starting with '[' is read as dmesg, not rejected as BAD_JSON", () => {
    expect(bootLog.startsWith("[    0.000000]")).toBe(true);
    expect(detectFormat(enc.encode(bootLog))).toBe("dmesg");
    expect(expected.length).toBe(8);
  });

  const table = bootLog.split("\n").filter((l) => l.includes("BIOS-e820"));
  const bare = table.map((l) => l.replace(/^\[[^\]]*\] /, ""));
  const variants: Record<string, string> = {
    "dmesg timestamps": table.join("\n"),
    "journalctl -k": bare.map((l) => `Dec 05 10:00:00 host kernel: ${l}`).join("\n"),
    "journalctl -o short-precise": bare.map((l) => `Dec 05 10:00:00.123456 host kernel: ${l}`).join("\n"),
    "dmesg -T": bare.map((l) => `[Sat Dec  5 10:00:00 2026] ${l}`).join("\n"),
    "dmesg -r (<6> levels)": table.map((l) => `<6>${l}`).join("\n"),
    "dmesg -x": table.map((l) => `kern  :info  : ${l}`).join("\n"),
    "CRLF line endings": `${table.join("\r\n")}\r\n`,
    "pasted table with leading spaces": bare.map((l) => `    ${l}`).join("\n"),
    "pasted timestamped table with leading spaces": table.map((l) => `  ${l}`).join("\n"),
  };
  for (const [name, text] of Object.entries(variants)) {
    it(`#1: ${name} is detected as dmesg and gives the same table`, () => {
      expect(detectFormat(enc.encode(text))).toBe("dmesg");
      expect(parseMapText(text).entries).toEqual(expected);
    });
  }

  it("#1: pagelab's own JSON is still JSON; broken JSON says BAD_JSON; a '[' text that is neither says so", () => {
    const json = new TextDecoder().decode(emitMap(getPreset("qemu:4G"), "json").bytes);
    expect(detectFormat(enc.encode(`  \n${json}`))).toBe("json");
    expect(thrown(() => parseMapText('{"entries": [')).code).toBe("BAD_JSON");
    const e = thrown(() => parseMapText("[not json, not a log]\nhello", { name: "x.txt" }));
    expect(e.code).toBe("UNKNOWN_FORMAT");
    expect(e.message).toContain("starts with '[' but is not JSON");
  });

  it("#1: a kernel log without a table says NO_TABLE (what it looked for), not BAD_JSON", () => {
    const e = thrown(() =>
      parseMapText("[    0.000000] Linux version 6.1\n[    0.1] hello", { name: "k.log" }),
    );
    expect(e.code).toBe("NO_TABLE");
  });

  it("parseMapText: 'auto' detects, a named format is obeyed, MAP_FORMATS lists them", () => {
    expect(MAP_FORMATS).toContain("dmesg");
    expect(parseMapText(bootLog, { format: "auto" }).format).toBe("dmesg");
    expect(thrown(() => parseMapText(bootLog, { format: "json", name: "p" })).code).toBe("BAD_JSON");
  });
});

describe("binary formats only when their structure validates", () => {
  it("#5: a truncated 100-byte Multiboot2 info is an error naming byte offset 0 and total_size, not an E820 table", () => {
    const mbi = emitMap(getPreset("qemu:4G"), "multiboot2").bytes;
    expect(mbi.length).toBeGreaterThan(100);
    const e = thrown(() => loadBytes(mbi.subarray(0, 100), { source: "mbi.bin" }));
    expect(e.code).toBe("UNKNOWN_FORMAT");
    expect(e.message).toContain("multiboot2: byte offset 0: total_size");
    expect(e.message).toContain("truncated");
    const forced = thrown(() => loadBytes(mbi.subarray(0, 100), { source: "mbi.bin", format: "multiboot2" }));
    expect(forced.message).toMatch(/^mbi\.bin: byte offset 0: total_size \d+, but the input is 100 bytes/);
  });

  for (const to of ["multiboot2", "limine", "uefi", "e820"]) {
    it(`#5: no truncation of an emitted ${to} blob is decoded as another format`, () => {
      const bytes = emitMap(getPreset("numa:2x3G"), to).bytes;
      const own = detectFormat(bytes);
      let rejected = 0;
      for (let n = 1; n < bytes.length; n++) {
        try {
          expect(detectFormat(bytes.subarray(0, n)), `${to} cut at ${n}`).toBe(own);
        } catch (e) {
          if (!(e instanceof PagelabError)) throw e;
          expect(e.message).toMatch(/byte offset \d+|empty|not recognised/);
          rejected++;
        }
      }
      expect(rejected).toBeGreaterThan(0);
    });
  }

  it("#5: an E820 blob with an implausible type names its byte offset", () => {
    const bytes = emitMap(getPreset("qemu:4G"), "e820").bytes.slice();
    new DataView(bytes.buffer).setUint32(24 * 3 + 16, 1701273968, true);
    const e = thrown(() => loadBytes(bytes, { source: "t.bin" }));
    expect(e.message).toContain("e820-bin: byte offset 88: type 1701273968 is not an E820 type");
  });
});

/** A 100,000-line e820 table with overlaps, unsorted, as a generator writes it. */
function bigTable(n: number): string {
  const types = ["usable", "reserved", "ACPI data", "ACPI NVS"];
  const lines: string[] = [];
  let a = 0n;
  for (let i = 0; i < n; i++) {
    const len = BigInt(0x1000 * (1 + ((i * 7919) % 64)));
    const h = (x: bigint) => `0x${x.toString(16).padStart(16, "0")}`;
    lines.push(`[    0.000000] BIOS-e820: [mem ${h(a)}-${h(a + len - 1n)}] ${types[(i * 31) % 4]}`);
    a += len + (i % 3 === 0 ? 0x1000n : 0n) - (i % 5 === 0 ? 0x800n : 0n);
  }
  for (let i = lines.length - 1; i > 0; i--) {
    const j = (i * 2654435761) % (i + 1);
    [lines[i], lines[j]] = [lines[j], lines[i]];
  }
  return lines.join("\n");
}

describe("scale: every stage O(n log n)", () => {
  it("#10: map on a 100,000-line e820 table finishes: parse, sanitize, table (middle elided), bars; all entries kept", () => {
    const map = parseMapText(bigTable(100_000), { name: "big.log" });
    expect(map.entries.length).toBeGreaterThan(50_000);
    for (let i = 1; i < map.entries.length; i++)
      expect(map.entries[i].start > map.entries[i - 1].end).toBe(true);
    const text = tableText(map);
    expect(text).toContain(`… ${map.entries.length - 200} more entries (--json lists all) …`);
    expect(text.split("\n").length).toBe(200 + 5);
    expect(bar(map.entries, 0n, 1n << 32n, 64).length).toBeGreaterThanOrEqual(64);
    expect(map.changes.length).toBeGreaterThan(1000);
  });

  it("#10: 20,000 nested overlapping entries of distinct types sanitize (heap, counted reports)", () => {
    const lines: string[] = [];
    for (let i = 0; i < 20_000; i++)
      lines.push(
        `BIOS-e820: [mem 0x${(i * 0x1000).toString(16)}-0x${(0x100000000 - 1 - i * 0x1000).toString(16)}] type ${i + 1}`,
      );
    const map = parseMapText(lines.join("\n"));
    // Nested shells: each entry shows at both edges of the next, the innermost (type 20000) in the middle.
    expect(map.entries.length).toBe(2 * 20_000 - 1);
    expect(map.entries[20_000 - 1].type).toBe(20_000);
    expect(map.entries[0].type).toBe(1);
    expect(map.changes.some((c) => /more piece\(s\)|vanished/.test(c.message))).toBe(true);
  });
});

describe("'-' is standard input", () => {
  const BIN = fileURLToPath(new URL("../../bin/pagelab.mjs", import.meta.url));
  const run = (args: string[], input: string) =>
    spawnSync(process.execPath, [BIN, ...args], {
      input,
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1" },
    });

  it("#13: pagelab map - reads a dmesg that starts with '[' from stdin", () => {
    const r = run(["map", "-", "--json"], bootLog);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).entries.length).toBe(8);
  });

  it("#13: boot --map - and --format on boot", () => {
    const r = run(["boot", "--map", "-", "--format", "dmesg", "--json"], bootLog);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).ramBytes).toBeGreaterThan(3 * 2 ** 30);
  });
});
