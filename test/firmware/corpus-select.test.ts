/**
 * `--map corpus...`: the corpus's machines as maps (src/firmware/corpus.ts). Selectors pick the
 * records they say, a record's map is its printed table, ids two records share get .1/.2 keys, and
 * bad selectors fail naming the selector and what was expected.
 */
import { describe, expect, it } from "vitest";
import { corpusMachines, expandMapNames, selectCorpus } from "../../src/firmware/corpus.ts";
import { e820TypeName } from "../../src/firmware/e820-types.ts";
import { loadMap } from "../../src/firmware/load.ts";
import { pagelab } from "../cli/run.ts";
import { loadRecords } from "./corpus.ts";

const records = loadRecords();
const GiB = 2 ** 30;

function failure(f: () => unknown): { code: string; message: string } {
  try {
    f();
  } catch (e) {
    return e as { code: string; message: string };
  }
  throw new Error("expected an error");
}

describe("corpus selectors", () => {
  it("corpus is every record, with unique keys (shared ids get .1 and .2)", () => {
    const all = selectCorpus("corpus");
    expect(all.length).toBe(records.length);
    expect(new Set(all.map((m) => m.key)).size).toBe(records.length);
    expect(all.map((m) => m.id)).toEqual(records.map((r) => r.id));
    const shared = all.filter((m) => m.key !== m.id);
    expect(shared.length).toBe(10);
    expect(shared.map((m) => m.key)).toContain("ml-cgroups-022e53458d-0.2");
  });

  it("filters select exactly the records whose fields match, terms combined with ':'", () => {
    const count = (f: (r: (typeof records)[number]) => boolean) => records.filter(f).length;
    expect(selectCorpus("corpus:ram>=8G").length).toBe(count((r) => r.derived.usable_bytes >= 8 * GiB));
    expect(selectCorpus("corpus:ram<1G").length).toBe(count((r) => r.derived.usable_bytes < GiB));
    expect(selectCorpus("corpus:platform=vm").length).toBe(count((r) => r.derived.platform === "vm"));
    expect(selectCorpus("corpus:firmware!=uefi").length).toBe(count((r) => r.derived.firmware !== "uefi"));
    const both = count(
      (r) =>
        r.derived.firmware === "uefi" &&
        r.derived.usable_bytes >= 8 * GiB &&
        r.derived.usable_bytes <= 64 * GiB,
    );
    expect(both).toBeGreaterThan(10);
    expect(selectCorpus("corpus:firmware=uefi:ram=8G..64G").length).toBe(both);
    expect(selectCorpus("corpus:ram=..1G").length).toBe(count((r) => r.derived.usable_bytes <= GiB));
    expect(selectCorpus("corpus:hypervisor=qemu/kvm").every((m) => m.platform === "vm")).toBe(true);
  });

  it("corpus:ID is the record's printed table, parsed as dmesg", () => {
    const r = records[7];
    const map = loadMap(`corpus:${r.id}`);
    expect(map.source).toBe(`corpus:${r.id}`);
    expect(map.entries.map((e) => `0x${e.start.toString(16).padStart(16, "0")}`)).toEqual(
      r.e820.map((e) => e.start),
    );
    expect(map.entries.map((e) => e820TypeName(e.type))).toEqual(
      r.e820.map((e) => e.type.replace(/^System RAM$/, "usable").replace(/^device reserved$/, "reserved")),
    );
  });

  it("compare expands selectors into one corpus:KEY per machine and keeps other maps", () => {
    const big = corpusMachines().filter((m) => m.ramBytes >= 2 ** 40);
    expect(expandMapNames(["qemu:4G", "corpus:ram>=1T"])).toEqual([
      "qemu:4G",
      ...big.map((m) => `corpus:${m.key}`),
    ]);
  });

  it("bad selectors and multi-machine selectors where one map is needed fail with what was expected", () => {
    expect(failure(() => selectCorpus("corpus:nosuch")).message).toMatch(
      /corpus:nosuch: no map with id 'nosuch'/,
    );
    expect(failure(() => selectCorpus("corpus:ram>=8X")).message).toMatch(/'8X' is not a size/);
    expect(failure(() => selectCorpus("corpus:colour=red")).message).toMatch(
      /unknown field 'colour' \(expected one of ram/,
    );
    expect(failure(() => selectCorpus("corpus:firmware=efi")).message).toMatch(
      /no map has firmware 'efi' \(values: bios, uefi/,
    );
    expect(failure(() => selectCorpus("corpus:firmware>uefi")).message).toMatch(/firmware takes = or !=/);
    expect(failure(() => selectCorpus("corpus:ram>=64T")).message).toMatch(/no map of the 244/);
    expect(failure(() => selectCorpus("corpus:")).message).toMatch(/nothing after 'corpus:'/);
    const twin = failure(() => selectCorpus("corpus:ml-cgroups-022e53458d-0"));
    expect(twin.message).toMatch(
      /2 records share the id .* corpus:ml-cgroups-022e53458d-0\.1, corpus:ml-cgroups-022e53458d-0\.2/,
    );
    const many = failure(() => loadMap("corpus:platform=vm"));
    expect(many.code).toBe("MANY_MAPS");
    expect(many.message).toMatch(/names \d+ maps .*pagelab compare --map corpus:platform=vm/);
  });

  it("through the CLI: boot takes one machine, and refuses a selector naming several in one line, exit 2", () => {
    const one = pagelab("boot", "--map", "corpus:linuxhw-029040A622", "--json", "--no-check");
    expect(one.status, one.stderr).toBe(0);
    const j = JSON.parse(one.stdout);
    expect(j.map).toMatch(/corpus:linuxhw-029040A622/);
    expect(j.ramBytes).toBe(17014878208); // 15.8 GiB: the R240's usable RAM as memblock keeps it
    const many = pagelab("pmm", "--map", "corpus:firmware=bios");
    expect(many.status).toBe(2);
    expect(many.stderr.trim().split("\n")).toHaveLength(1);
    expect(many.stderr).toMatch(/\[MANY_MAPS\]: corpus:firmware=bios names 86 maps/);
    // pagelab map lists the machines a selector names, to pick one from
    const list = pagelab("map", "corpus:ram>=1000G", "--json");
    expect(list.status, list.stderr).toBe(0);
    const got = JSON.parse(list.stdout).machines as { map: string; usableBytes: number }[];
    expect(got.map((m) => m.map)).toEqual(
      corpusMachines()
        .filter((m) => m.ramBytes >= 1000 * GiB)
        .map((m) => `corpus:${m.key}`),
    );
    expect(got.length).toBe(4);
  });
});
