/**
 * The real-map corpus as maps: `corpus/e820-real.jsonl` (244 firmware maps Linux printed on real
 * machines and VMs, shipped with the package) selected by name.
 *
 *   corpus                       every map, in file order
 *   corpus:KEY                   one map: the record's `id` (the 5 ids two records share are KEY.1, KEY.2)
 *   corpus:TERM[:TERM...]        the maps every TERM holds for (TERM: FIELD OP VALUE)
 *
 * FIELD OP VALUE:
 *   ram      usable RAM (derived.usable_bytes) in bytes, with K/M/G/T (binary): ram>=8G, ram<1T,
 *            ram=4G..16G (both ends included; either may be left out: ram=64G.., shell-safe)
 *   numa     NUMA nodes seen in the log (unknown: 1), entries: e820 entries; same operators as ram
 *   firmware uefi|bios|xen-pv|unknown, platform physical|vm|unknown, origin linuxhw|mailing-list,
 *   hypervisor qemu/kvm, hyper-v, xen-pv, ... or none; `=` and `!=`
 * Operators: = != >= <= > <. `>` and `<` need quotes in a shell; `ram=8G..` does not.
 *
 * A map is the record's `e820_raw` lines through the dmesg parser (parseDmesg), then sanitized: the
 * same path a user's pasted dmesg takes, and the lines as Linux printed them (legacy end-exclusive
 * tables, `Xen:` prefixes and 6.16's `[gap]` lines included). test/firmware/corpus.test.ts checks that
 * every record's lines parse to exactly its `e820` table.
 */
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { fail } from "../errors.ts";
import { packagePath } from "../paths.ts";
import { parseDmesg } from "./dmesg.ts";
import { sanitize } from "./sanitize.ts";
import type { MemoryMap } from "./types.ts";

export const CORPUS_FILE = "corpus/e820-real.jsonl";
export const CORPUS = "corpus";

/** One machine of the corpus, with the fields selectors and reports use. */
export interface CorpusMachine {
  /** Unique name: `corpus:KEY` selects it. */
  key: string;
  id: string;
  ramBytes: number;
  firmware: string;
  platform: string;
  hypervisor: string | null;
  origin: string;
  numaNodes: number;
  entries: number;
  dmi: string | null;
  raw: string[];
}

const Record = v.object({
  id: v.pipe(v.string(), v.regex(/^[A-Za-z0-9-]+$/)),
  origin: v.string(),
  dmi: v.nullable(v.string()),
  numa_nodes: v.nullable(v.number()),
  e820_raw: v.pipe(v.array(v.string()), v.minLength(1)),
  derived: v.object({
    n_entries: v.number(),
    usable_bytes: v.number(),
    firmware: v.string(),
    platform: v.string(),
    hypervisor_guess: v.nullable(v.string()),
  }),
});

let cache: CorpusMachine[] | undefined;

/** Every machine of the corpus, in file order (read once). */
export function corpusMachines(): CorpusMachine[] {
  if (cache !== undefined) return cache;
  const file = packagePath(CORPUS_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    return fail("NO_FILE", `cannot read the corpus ${file} (${(e as NodeJS.ErrnoException).code})`);
  }
  const out: CorpusMachine[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      fail("BAD_CORPUS", `${file}:${i + 1}: not a JSON object`);
    }
    const r = v.safeParse(Record, json);
    if (!r.success) {
      const issue = r.issues[0];
      fail("BAD_CORPUS", `${file}:${i + 1}: ${v.getDotPath(issue) ?? "record"}: ${issue.message}`);
    }
    const x = r.output;
    out.push({
      key: x.id,
      id: x.id,
      ramBytes: x.derived.usable_bytes,
      firmware: x.derived.firmware,
      platform: x.derived.platform,
      hypervisor: x.derived.hypervisor_guess,
      origin: x.origin,
      numaNodes: x.numa_nodes ?? 1,
      entries: x.derived.n_entries,
      dmi: x.dmi,
      raw: x.e820_raw,
    });
  }
  // ids two records share (two attachments of one message) become ID.1, ID.2 in file order
  const count = new Map<string, number>();
  for (const m of out) count.set(m.id, (count.get(m.id) ?? 0) + 1);
  const seen = new Map<string, number>();
  for (const m of out)
    if (count.get(m.id)! > 1) {
      const n = (seen.get(m.id) ?? 0) + 1;
      seen.set(m.id, n);
      m.key = `${m.id}.${n}`;
    }
  cache = out;
  return out;
}

export function isCorpusName(name: string): boolean {
  return name === CORPUS || name.startsWith(`${CORPUS}:`);
}

type Field =
  | { kind: "number"; get: (m: CorpusMachine) => number }
  | { kind: "text"; get: (m: CorpusMachine) => string; values: string };

const FIELDS: Record<string, Field> = {
  ram: { kind: "number", get: (m) => m.ramBytes },
  numa: { kind: "number", get: (m) => m.numaNodes },
  entries: { kind: "number", get: (m) => m.entries },
  firmware: { kind: "text", get: (m) => m.firmware, values: "uefi, bios, xen-pv, unknown" },
  platform: { kind: "text", get: (m) => m.platform, values: "physical, vm, unknown" },
  origin: { kind: "text", get: (m) => m.origin, values: "linuxhw, mailing-list" },
  hypervisor: {
    kind: "text",
    get: (m) => m.hypervisor ?? "none",
    values: "none, qemu/kvm, hyper-v, xen-pv, virtualbox, gce, ...",
  },
};

export const CORPUS_SYNTAX =
  "corpus, corpus:ID, or corpus:FIELD OP VALUE[:...] with FIELD ram|numa|entries|firmware|platform|hypervisor|origin (e.g. corpus:firmware=uefi:ram=8G..64G)";

const UNITS: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

function number(text: string, field: string, selector: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)(?:i?B)?$/i.exec(text);
  if (m === null || (field !== "ram" && m[2] !== ""))
    fail(
      "BAD_MAP",
      `${selector}: '${text}' is not a ${field === "ram" ? "size (a number with K, M, G or T, e.g. 8G)" : "number"}`,
    );
  return Number(m[1]) * UNITS[m[2].toUpperCase()];
}

/** One FIELD OP VALUE term as a predicate. */
function term(t: string, selector: string): (m: CorpusMachine) => boolean {
  const p = /^([a-z]+)(>=|<=|!=|=|>|<)(.*)$/.exec(t);
  if (p === null) fail("BAD_MAP", `${selector}: '${t}' is not FIELD OP VALUE; expected ${CORPUS_SYNTAX}`);
  const [, name, op, value] = p;
  const f = Object.hasOwn(FIELDS, name) ? FIELDS[name] : undefined;
  if (f === undefined)
    fail(
      "BAD_MAP",
      `${selector}: unknown field '${name}' (expected one of ${Object.keys(FIELDS).join(", ")})`,
    );
  if (f.kind === "text") {
    if (op !== "=" && op !== "!=")
      fail("BAD_MAP", `${selector}: ${name} takes = or != (got ${op}); values: ${f.values}`);
    const known = new Set(corpusMachines().map(f.get));
    if (!known.has(value))
      fail("BAD_MAP", `${selector}: no map has ${name} '${value}' (values: ${[...known].sort().join(", ")})`);
    return op === "=" ? (m) => f.get(m) === value : (m) => f.get(m) !== value;
  }
  const range = /^([^.]*)\.\.([^.]*)$/.exec(value);
  if (range !== null && op === "=") {
    const lo = range[1] === "" ? -Infinity : number(range[1], name, selector);
    const hi = range[2] === "" ? Infinity : number(range[2], name, selector);
    return (m) => f.get(m) >= lo && f.get(m) <= hi;
  }
  const x = number(value, name, selector);
  const cmp: Record<string, (a: number) => boolean> = {
    "=": (a) => a === x,
    "!=": (a) => a !== x,
    ">=": (a) => a >= x,
    "<=": (a) => a <= x,
    ">": (a) => a > x,
    "<": (a) => a < x,
  };
  return (m) => cmp[op](f.get(m));
}

/** The machines a selector names, in corpus order; throws BAD_MAP when it is malformed or names none. */
export function selectCorpus(selector: string): CorpusMachine[] {
  const all = corpusMachines();
  if (selector === CORPUS) return all;
  const rest = selector.slice(CORPUS.length + 1);
  if (rest === "") fail("BAD_MAP", `'${selector}': nothing after 'corpus:'; expected ${CORPUS_SYNTAX}`);
  if (!/[=<>]/.test(rest)) {
    const one = all.find((m) => m.key === rest);
    if (one !== undefined) return [one];
    const shared = all.filter((m) => m.id === rest);
    if (shared.length > 0)
      fail(
        "BAD_MAP",
        `${selector}: ${shared.length} records share the id ${rest}; name one of ${shared.map((m) => `corpus:${m.key}`).join(", ")}`,
      );
    fail("BAD_MAP", `${selector}: no map with id '${rest}' in ${CORPUS_FILE} (expected ${CORPUS_SYNTAX})`);
  }
  const preds = rest.split(":").map((t) => term(t, selector));
  const got = all.filter((m) => preds.every((p) => p(m)));
  if (got.length === 0) fail("BAD_MAP", `${selector}: no map of the ${all.length} in ${CORPUS_FILE} matches`);
  return got;
}

/** `corpus`, `corpus:FILTER` and `corpus:KEY` expanded to one `corpus:KEY` per machine; others kept. */
export function expandMapNames(names: readonly string[]): string[] {
  return names.flatMap((n) => (isCorpusName(n) ? selectCorpus(n).map((m) => `${CORPUS}:${m.key}`) : [n]));
}

/** The machine a run's map name (`corpus:KEY`) names, or undefined for any other map. */
export function corpusMachine(name: string): CorpusMachine | undefined {
  if (!isCorpusName(name)) return undefined;
  const key = name.slice(CORPUS.length + 1);
  return corpusMachines().find((m) => m.key === key);
}

/**
 * The map a selector names, when it names one machine. A selector matching several is refused: a boot
 * is one machine (`pagelab compare --map SELECTOR` runs each).
 */
export function corpusMap(selector: string): MemoryMap {
  const got = selectCorpus(selector);
  if (got.length > 1) {
    const ids = got.slice(0, 3).map((m) => `corpus:${m.key}`);
    fail(
      "MANY_MAPS",
      `${selector} names ${got.length} maps (${ids.join(", ")}${got.length > 3 ? ", ..." : ""}); ` +
        `this command takes one machine: name one (corpus:ID), or run them all with pagelab compare --map ${selector}`,
    );
  }
  const m = got[0];
  return sanitize(parseDmesg(m.raw.join("\n"), `${CORPUS}:${m.key}`));
}
