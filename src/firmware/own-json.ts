/**
 * pagelab's own map format, in JSON or YAML: what `pagelab map --json` prints, so its output can be
 * fed back, edited by hand, or written from scratch.
 *
 *     { "format": "…",                                  (optional, informative)
 *       "entries": [ { "start": "0x0", "end": "0x9fbff", "type": "usable" }, … ],
 *       "nodes":   [ { "node": 0, "start": "0x0", "end": "0x13fffffff" } ] }   (optional, NUMA)
 *
 * `end` is inclusive. Addresses are strings (0x hex or decimal: JSON numbers lose precision above 2^53)
 * or, in hand-written files, plain numbers below 2^53. `type` is a Linux word (`usable`, `ACPI NVS`,
 * `persistent (type 12)`, `soft reserved`, `type 20`) or an E820 number. Other keys (usableBytes, changes)
 * are ignored. Validated with valibot; errors give the path (entries[3].end) and, for YAML, the line.
 */
import * as v from "valibot";
import { parseDocument } from "yaml";
import { fail } from "../errors.ts";
import { e820TypeName, parseE820TypeName } from "./e820-types.ts";
import type { MapEntry, MemoryMap, NodeRange } from "./types.ts";
import { hex } from "../errors.ts";

const Address = v.union([
  v.pipe(
    v.string(),
    v.regex(/^(?:0x[0-9a-fA-F]{1,16}|\d{1,20})$/, "expected 0x hex or decimal, at most 64 bits"),
  ),
  v.pipe(v.number(), v.safeInteger("expected an integer below 2^53 (use a 0x string above)"), v.minValue(0)),
]);
const TypeField = v.union([
  v.pipe(
    v.string(),
    v.check(
      (s) => parseE820TypeName(s) !== undefined,
      "expected a Linux type word (usable, reserved, ACPI data, ACPI NVS, unusable, persistent (type N), soft reserved, type N)",
    ),
  ),
  v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff)),
]);
const Entry = v.object({ start: Address, end: Address, type: TypeField });
const Node = v.object({
  node: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1023)),
  start: Address,
  end: Address,
});
const Schema = v.object({
  format: v.optional(v.string()),
  entries: v.pipe(v.array(Entry), v.minLength(1)),
  nodes: v.optional(v.array(Node)),
});

const big = (a: string | number): bigint => {
  const b = BigInt(a);
  if (b >= 1n << 64n) fail("BAD_NUMBER", `address ${a} does not fit in 64 bits`);
  return b;
};

function validate(
  data: unknown,
  source: string | undefined,
  lineOf: (path: (string | number)[]) => string,
): MemoryMap {
  const r = v.safeParse(Schema, data);
  if (!r.success) {
    const issue = r.issues[0];
    const path = (issue.path ?? []).map((p) => p.key as string | number);
    const dotted = path
      .map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`))
      .join("")
      .replace(/^\./, "");
    fail("BAD_SCHEMA", `${source ?? "input"}${lineOf(path)}: ${dotted || "(top level)"}: ${issue.message}`);
  }
  const entries: MapEntry[] = r.output.entries.map((e) => ({
    start: big(e.start),
    end: big(e.end),
    type: typeof e.type === "number" ? e.type : (parseE820TypeName(e.type) as number),
  }));
  const map: MemoryMap = { format: "json", entries, changes: [], source };
  if (r.output.nodes)
    map.nodes = r.output.nodes.map(
      (n): NodeRange => ({ node: n.node, start: big(n.start), end: big(n.end) }),
    );
  return map;
}

export function parseOwnJson(text: string, source?: string): MemoryMap {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return fail("BAD_JSON", `${source ?? "input"}: not valid JSON: ${(e as Error).message}`);
  }
  return validate(data, source, () => "");
}

export function parseOwnYaml(text: string, source?: string): MemoryMap {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, logLevel: "error" });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    fail("BAD_YAML", `${source ?? "input"}:${e.linePos?.[0].line ?? "?"}: ${e.message.split("\n")[0]}`);
  }
  const lineOf = (path: (string | number)[]) => {
    const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
    if (!node?.range) return "";
    return `:${text.slice(0, node.range[0]).split("\n").length}`;
  };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return fail("BAD_YAML", `${source ?? "input"}: ${(e as Error).message.split("\n")[0]}`);
  }
  const map = validate(data, source, lineOf);
  return { ...map, format: "yaml" };
}

/** The JSON shape of a map (as `pagelab map --json` prints its entries). */
export function toOwnJson(map: MemoryMap): {
  format: string;
  entries: { start: string; end: string; type: string }[];
  nodes?: { node: number; start: string; end: string }[];
} {
  const out: ReturnType<typeof toOwnJson> = {
    format: map.format,
    entries: map.entries.map((e) => ({ start: hex(e.start), end: hex(e.end), type: e820TypeName(e.type) })),
  };
  if (map.nodes) out.nodes = map.nodes.map((n) => ({ node: n.node, start: hex(n.start), end: hex(n.end) }));
  return out;
}
