/**
 * Findings: plain sentences computed from the result rows (never written by hand), each with the
 * `pagelab compare` command that reproduces exactly the rows it cites. A finding is only stated when
 * its rows exist and completed; nothing is said about what was not measured.
 */
import { corpusMachines, isCorpusName } from "../../firmware/corpus.ts";
import type { ResultRow } from "../compare.ts";
import {
  isMultiMap,
  machineName,
  metadataShares,
  pageTablesByMap,
  rankingFlips,
  refusals,
} from "./corpus.ts";

export interface Finding {
  topic: string;
  text: string;
  command: string;
}

/** Numbers as the report prints them (tests use the same rule). */
export function fmt(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 100) return String(Math.round(x));
  if (a >= 1) return x.toFixed(1);
  return x.toPrecision(2);
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function uniq<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

/** A --maps list: `corpus` when the maps are every machine of the corpus. */
function mapsArg(maps: string[]): string {
  if (maps.length > 1 && maps.every(isCorpusName)) {
    const all = corpusMachines().map((m) => `corpus:${m.key}`);
    if (maps.length === all.length && all.every((m, i) => m === maps[i])) return "corpus";
  }
  return maps.join(",");
}

/** The command that reproduces a set of rows (all of one kind). */
export function commandForRows(rows: ResultRow[]): string {
  const r0 = rows[0];
  const pmms = uniq(rows.map((r) => r.pmm)).join(",");
  if (r0.kind === "sweep") {
    const sweep = uniq(rows.map((r) => `${r.map}${r.levels === 5 ? "@5" : ""}`)).join(",");
    return `pagelab compare --pmm ${pmms} --workload none --sweep ${sweep}`;
  }
  const parts = [
    "pagelab compare",
    `--maps ${mapsArg(uniq(rows.map((r) => r.map)))}`,
    `--pmm ${pmms}`,
    `--kmap ${uniq(rows.map((r) => r.kmap)).join(",")}`,
    `--workload ${uniq(rows.map((r) => r.workload)).join(",")}`,
    `--cpus ${uniq(rows.map((r) => r.cpus)).join(",")}`,
    `--seed ${r0.seed}`,
    `--ops ${r0.ops}`,
  ];
  if (r0.levels === 5) parts.push("--levels 5");
  if (r0.trace !== null) parts.push(`--trace ${r0.trace}`);
  parts.push("--sweep none");
  return parts.join(" ");
}

const ok = (r: ResultRow) => r.error === null;
const wl = (rows: ResultRow[]) => rows.filter((r) => r.kind === "workload" && ok(r) && r.perOp !== null);

/** The PMM a per-strategy sentence is told for: Linux's buddy when it ran, else the first design. */
function refPmm(rows: ResultRow[]): string {
  return rows.some((r) => r.pmm === "buddy") ? "buddy" : rows[0].pmm;
}

/**
 * One row per kernel mapping, all with `first`'s PMM and map, and alike by `same` (by default: the
 * same workload and CPU count): the rows a per-strategy sentence compares.
 */
function onePerKmap(
  rows: ResultRow[],
  first: ResultRow,
  same: (r: ResultRow) => boolean = (r) => r.workload === first.workload && r.cpus === first.cpus,
): ResultRow[] {
  const g: ResultRow[] = [];
  for (const r of rows)
    if (r.pmm === first.pmm && r.map === first.map && same(r) && !g.some((x) => x.kmap === r.kmap)) g.push(r);
  return g;
}

function listing(items: string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function metadataFinding(rows: ResultRow[]): Finding[] {
  const sweep = rows.filter((r) => r.kind === "sweep" && ok(r));
  if (sweep.length < 2) return [];
  const byMap = new Map<string, ResultRow[]>();
  for (const r of sweep) byMap.set(`${r.map}@${r.levels}`, [...(byMap.get(`${r.map}@${r.levels}`) ?? []), r]);
  const candidates = [...byMap.values()].filter((g) => g.length >= 2);
  if (candidates.length === 0) return [];
  // the largest RAM size at which at least two designs booted
  const g = candidates.sort((a, b) => b[0].ramBytes - a[0].ramBytes)[0];
  const sorted = [...g].sort((a, b) => a.metadataBytes - b.metadataBytes);
  const lo = sorted[0];
  const hi = sorted[sorted.length - 1];
  const pct = (r: ResultRow) => fmt((100 * r.metadataBytes) / r.ramBytes);
  const refused = rows.filter(
    (r) =>
      r.kind === "sweep" && r.map === lo.map && r.levels === lo.levels && r.error?.code === "HOST_MEMORY",
  );
  const sweepDesigns = uniq(rows.filter((r) => r.kind === "sweep").map((r) => r.pmm));
  const among =
    g.length < sweepDesigns.length
      ? `, among the ${g.length} designs that ran at that size (${listing(g.map((r) => r.pmm))}),`
      : "";
  let text =
    `With ${fmtBytes(lo.ramBytes)} of usable RAM (${lo.map}${lo.levels === 5 ? ", 5-level paging" : ""}), ` +
    `PMM metadata after boot ranges${among} from ${fmtBytes(lo.metadataBytes)} for ${lo.pmm} (${pct(lo)} % of RAM) ` +
    `to ${fmtBytes(hi.metadataBytes)} for ${hi.pmm} (${pct(hi)} %).`;
  if (refused.length > 0)
    text += ` ${listing(refused.map((r) => r.pmm))} ${refused.length === 1 ? "was" : "were"} refused by the host-memory budget at that size.`;
  const out: Finding[] = [{ topic: "metadata", text, command: commandForRows(g) }];
  for (const single of [...byMap.values()].filter((x) => x.length === 1)) {
    const r = single[0];
    const others = rows.filter(
      (x) => x.kind === "sweep" && x.map === r.map && x.levels === r.levels && x.error !== null,
    );
    if (others.length === 0) continue;
    out.push({
      topic: "metadata",
      text:
        `On ${r.map}${r.levels === 5 ? " with 5-level paging" : ""} (${fmtBytes(r.ramBytes)} of usable RAM), only ${r.pmm} booted within the host budget: ` +
        `${fmtBytes(r.metadataBytes)} of metadata (${fmt((100 * r.metadataBytes) / r.ramBytes)} % of RAM); ${others.length} other design(s) were refused.`,
      command: commandForRows([r, ...others]),
    });
  }
  return out;
}

function pageTableFinding(rows: ResultRow[]): Finding[] {
  const w = wl(rows);
  if (w.length === 0) return [];
  const pmm = refPmm(w);
  // the first map the reference design completed on (the first map, unless its runs failed there)
  const first = w.find((r) => r.pmm === pmm)!;
  const map = first.map;
  const group = onePerKmap(w, first, () => true);
  if (group.length < 2) return [];
  const parts = group.map((r) => `${fmtBytes(r.pageTableBytes)} with ${r.kmap}`);
  return [
    {
      topic: "page tables",
      text: `With the ${pmm} PMM on ${map}, the kernel's page tables after boot take ${listing(parts)}.`,
      command: commandForRows(group),
    },
  ];
}

function refsFindings(rows: ResultRow[]): Finding[] {
  const out: Finding[] = [];
  const w = wl(rows);
  for (const workload of uniq(w.map((r) => r.workload as string))) {
    const first = w.find((r) => r.workload === workload)!;
    const g = w.filter(
      (r) => r.workload === workload && r.kmap === first.kmap && r.map === first.map && r.cpus === first.cpus,
    );
    if (uniq(g.map((r) => r.pmm)).length < 2) continue;
    const s = [...g].sort((a, b) => a.perOp!.memRefs - b.perOp!.memRefs);
    const lo = s[0];
    const hi = s[s.length - 1];
    out.push({
      topic: "memory references",
      text:
        `On ${workload} (${first.kmap} mapping, ${first.map}), ${lo.pmm} needs the fewest memory references per operation ` +
        `(${fmt(lo.perOp!.memRefs)}) and ${hi.pmm} the most (${fmt(hi.perOp!.memRefs)})` +
        (typeof lo.info.refusedPercent === "number" && lo.info.refusedPercent > 0
          ? `, but ${lo.pmm} refused ${fmt(lo.info.refusedPercent)} % of its requests, which cost little.`
          : "."),
      command: commandForRows(g),
    });
  }
  return out;
}

function tlbFindings(rows: ResultRow[]): Finding[] {
  const out: Finding[] = [];
  const w = wl(rows);
  for (const workload of uniq(w.map((r) => r.workload as string))) {
    const ofW = w.filter((r) => r.workload === workload);
    const first = ofW.find((r) => r.pmm === refPmm(ofW))!;
    const g = onePerKmap(w, first);
    if (g.length < 2) continue;
    out.push({
      topic: "TLB misses",
      text: `On ${workload} with the ${first.pmm} PMM, TLB misses per operation are ${listing(g.map((r) => `${fmt(r.perOp!.tlbMisses)} with ${r.kmap}`))}.`,
      command: commandForRows(g),
    });
  }
  return out;
}

function ipiFindings(rows: ResultRow[]): Finding[] {
  const out: Finding[] = [];
  const w = wl(rows).filter((r) => r.ipisPerKfree !== null || r.ipisPerVfree !== null);
  for (const workload of uniq(w.map((r) => r.workload as string))) {
    const ofW = w.filter((r) => r.workload === workload);
    const first = ofW.find((r) => r.pmm === refPmm(ofW))!;
    const g = onePerKmap(w, first);
    const say = (key: "ipisPerKfree" | "ipisPerVfree", what: string) => {
      const have = g.filter((r) => r[key] !== null);
      if (have.length === 0) return;
      let text =
        `On ${workload} with the ${first.pmm} PMM and ${first.cpus} CPUs, a ${what} sends ` +
        `${listing(have.map((r) => `${fmt(r[key]!)} IPIs with ${r.kmap}`))} on average.`;
      const all = w.filter((r) => r.workload === workload && r[key] !== null);
      const top = [...all].sort((a, b) => b[key]! - a[key]!)[0];
      const cited = [...have];
      if (top !== undefined && top[key]! > Math.max(...have.map((r) => r[key]!))) {
        text += ` The most among all designs: ${fmt(top[key]!)} with ${top.pmm} and ${top.kmap}.`;
        cited.push(top);
      }
      const lazy = first.info.lazyPagesAtEnd;
      if (key === "ipisPerVfree" && typeof lazy === "number" && lazy > 0 && have.every((r) => r[key] === 0))
        text += ` The lazy purge deferred every flush: ${lazy} vfree'd pages were still waiting for one at the end of the ${first.kmap} run.`;
      out.push({ topic: "IPIs", text, command: commandForRows(cited) });
    };
    say("ipisPerVfree", "vfree");
    const remaps = g.filter((r) => (r.opCounts.remap ?? 0) > 0 && typeof r.info.munmapIpis === "number");
    if (remaps.length > 0)
      out.push({
        topic: "IPIs",
        text:
          `On ${workload} with the ${first.pmm} PMM and ${first.cpus} CPUs, unmapping a user buffer that ran on several CPUs sends ` +
          `${listing(remaps.map((r) => `${fmt((r.info.munmapIpis as number) / r.opCounts.remap)} IPIs with ${r.kmap}`))} per munmap.`,
        command: commandForRows(remaps),
      });
    say("ipisPerKfree", "kfree");
  }
  return out;
}

function fragmentationFinding(rows: ResultRow[]): Finding[] {
  const w = wl(rows).filter(
    (r) => r.workload === "file-cache" && typeof r.info.order9SuccessPercent === "number",
  );
  if (w.length === 0) return [];
  const first = w[0];
  const g = w.filter((r) => r.kmap === first.kmap && r.map === first.map && r.cpus === first.cpus);
  const s = [...g].sort(
    (a, b) => (b.info.order9SuccessPercent as number) - (a.info.order9SuccessPercent as number),
  );
  const parts = s.map((r) => `${fmt(r.info.order9SuccessPercent as number)} % with ${r.pmm}`);
  return [
    {
      topic: "fragmentation",
      text:
        `After filling 90 % of RAM with page cache (1 page in 16 unmovable) and evicting the oldest half ` +
        `(${first.map}, mem=${fmtBytes(first.mem ?? first.ramBytes)}), 2 MiB (order-9) requests succeeded ${listing(parts)}.`,
      command: commandForRows(g),
    },
  ];
}

/** Per order a page-churn row requested: how many requests and how many were refused. */
export function refusalsByOrder(r: ResultRow): { order: number; requested: number; refused: number }[] {
  const out: { order: number; requested: number; refused: number }[] = [];
  for (const [k, v] of Object.entries(r.info)) {
    const m = /^requestsOrder(\d+)$/.exec(k);
    if (m === null || typeof v !== "number") continue;
    out.push({ order: Number(m[1]), requested: v, refused: r.failed[`order${m[1]}`] ?? 0 });
  }
  return out.sort((a, b) => a.order - b.order);
}

/** What a design refused, order by order, in words that hold for that row ("every request of order 1 and 2; 20 % of order 9"). */
function refusedOrders(r: ResultRow): string {
  const per = refusalsByOrder(r);
  const all = per.filter((x) => x.refused > 0 && x.refused === x.requested).map((x) => String(x.order));
  const some = per.filter((x) => x.refused > 0 && x.refused < x.requested);
  const served = per
    .filter((x) => x.refused === 0 && x.requested > 0 && x.order > 0)
    .map((x) => String(x.order));
  const parts: string[] = [];
  if (all.length > 0) parts.push(`every request of order ${listing(all)}`);
  for (const x of some) parts.push(`${fmt((100 * x.refused) / x.requested)} % of order ${x.order}`);
  let text = listing(parts);
  if (served.length > 0 && parts.length > 0) text += ` and served every request of order ${listing(served)}`;
  const above0 = per.filter((x) => x.order > 0 && x.requested > 0);
  if (
    above0.length > 0 &&
    above0.every((x) => x.refused === x.requested) &&
    per.every((x) => x.order > 0 || x.refused === 0)
  )
    text += " (no contiguous blocks)";
  return text;
}

function refusalFinding(rows: ResultRow[]): Finding[] {
  const g = wl(rows).filter(
    (r) =>
      r.workload === "page-churn" && typeof r.info.refusedPercent === "number" && r.info.refusedPercent > 0,
  );
  if (g.length === 0) return [];
  const first = g[0];
  const same = g.filter((r) => r.kmap === first.kmap && r.map === first.map && r.cpus === first.cpus);
  // designs whose refusals read the same are named together; each clause holds for every design it names
  const clauses = new Map<string, string[]>();
  for (const r of same) {
    const key = `refused ${fmt(r.info.refusedPercent as number)} % of the allocation requests: ${refusedOrders(r)}`;
    clauses.set(key, [...(clauses.get(key) ?? []), r.pmm]);
  }
  return [
    {
      topic: "contiguity",
      text: `On page-churn (${first.kmap} mapping), ${[...clauses].map(([c, pmms]) => `${listing(pmms)} ${c}`).join("; ")}.`,
      command: commandForRows(same),
    },
  ];
}

function errorFindings(rows: ResultRow[]): Finding[] {
  const bad = rows.filter((r) => r.error !== null);
  if (bad.length === 0) return [];
  const byCode = new Map<string, ResultRow[]>();
  for (const r of bad) byCode.set(r.error!.code, [...(byCode.get(r.error!.code) ?? []), r]);
  const out: Finding[] = [];
  for (const [code, g] of byCode) {
    const designs = uniq(g.map((r) => r.pmm));
    const what = uniq(g.map((r) => (r.kind === "sweep" ? `sweep ${r.map}` : (r.workload as string))));
    out.push({
      topic: "runs not completed",
      text:
        `${g.length} of ${rows.length} runs ended with ${code} (${listing(designs)}; ${listing(what)}), e.g.: ` +
        `${g[0].error!.message.split("\n")[0]}`,
      command: g[0].command,
    });
  }
  return out;
}

/** Every finding the rows support, in report order. */
/** The security cost beside the speed: what `pagelab audit` says of each kernel-mapping strategy. */
function securityFinding(rows: ResultRow[]): Finding[] {
  const w = wl(rows).filter((r) => r.audit !== null);
  if (w.length === 0) return [];
  const pmm = refPmm(w);
  // the first map the reference design completed on (the first map, unless its runs failed there)
  const first = w.find((r) => r.pmm === pmm)!;
  const map = first.map;
  const group = onePerKmap(w, first, () => true);
  const parts = group.map((r) => {
    const a = r.audit!;
    const kaslr = a.kaslrBits > 0 ? ` (direct-map KASLR ${fmt(a.kaslrBits)} bits)` : "";
    return `${fmt(a.ramReadableFraction * 100)} % of RAM under ${r.kmap}${kaslr}`;
  });
  const bad = w.filter((r) => !r.audit!.ok);
  const verdict =
    bad.length === 0
      ? "No run has a W+X or user-accessible kernel mapping."
      : `${bad.length} run(s) have W+X or user-accessible kernel mappings: ${listing(uniq(bad.map((r) => `${r.pmm}/${r.kmap}`)))}.`;
  return [
    {
      topic: "security",
      text: `After boot on ${map} with the ${pmm} PMM, kernel mappings can read ${listing(parts)}. ${verdict}`,
      command: `${commandForRows(group)}   # and: pagelab audit --kmap ${group.map((r) => r.kmap).join("|")}`,
    },
  ];
}

/** The share of RAM each design's metadata takes across the machines. */
function metadataShareFinding(rows: ResultRow[]): Finding[] {
  const pts = metadataShares(rows);
  const maps = uniq(pts.map((p) => p.map));
  if (maps.length < 2) return [];
  const lo = Math.min(...pts.map((p) => p.ramGiB * 2 ** 30));
  const hi = Math.max(...pts.map((p) => p.ramGiB * 2 ** 30));
  const parts = uniq(pts.map((p) => p.pmm)).map((pmm) => {
    const of = pts.filter((p) => p.pmm === pmm).map((p) => p.percent);
    const a = fmt(Math.min(...of));
    const b = fmt(Math.max(...of));
    return `${a === b ? a : `${a} to ${b}`} % with ${pmm}`;
  });
  const used = rows.filter((r) => r.kind === "workload" && ok(r) && maps.includes(r.map));
  return [
    {
      topic: "corpus: metadata",
      text: `Across ${maps.length} machines (${fmtBytes(lo)} to ${fmtBytes(hi)} of usable RAM), PMM metadata after boot, as a share of RAM, is ${listing(parts)}.`,
      command: commandForRows(used.filter((r) => r.kmap === used[0].kmap)),
    },
  ];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Each strategy's page tables across the machines (the reference design's runs). */
function corpusPageTableFinding(rows: ResultRow[]): Finding[] {
  const { kmaps, pmm, maps } = pageTablesByMap(rows);
  if (maps.length < 2 || kmaps.length === 0) return [];
  const parts = kmaps.map((k) => {
    const b = maps.map((m) => m.byKmap[k]).filter((x): x is number => x !== undefined);
    return `${fmtBytes(Math.min(...b))} to ${fmtBytes(Math.max(...b))} (median ${fmtBytes(median(b))}) with ${k}`;
  });
  let text = `With the ${pmm} PMM on ${maps.length} machines, the kernel's page tables after boot take ${listing(parts)}.`;
  if (kmaps.length >= 2) {
    const [a, b] = kmaps;
    const both = maps.filter((m) => m.byKmap[a] !== undefined && m.byKmap[b] !== undefined);
    const fewer = both.filter((m) => m.byKmap[b] < m.byKmap[a]).length;
    text += ` ${b} needs fewer page-table bytes than ${a} on ${fewer} of ${both.length} machines.`;
  }
  const used = rows.filter((r) => r.kind === "workload" && ok(r) && r.pmm === pmm);
  const w0 = used[0].workload;
  return [
    { topic: "corpus: page tables", text, command: commandForRows(used.filter((r) => r.workload === w0)) },
  ];
}

/** Boots refused, by cause. */
function refusalFindings(rows: ResultRow[]): Finding[] {
  const g = refusals(rows);
  const out: Finding[] = [];
  const total = uniq(rows.filter((r) => r.kind === "workload").map((r) => r.map)).length;
  for (const code of uniq(g.map((x) => x.code))) {
    const of = g.filter((x) => x.code === code);
    const maps = uniq(of.flatMap((x) => x.maps));
    const pmms = of.map((x) => `${x.pmm} on ${x.maps.length}`);
    const named = maps.slice(0, 3).map(machineName);
    const cited = rows.filter(
      (r) => r.kind === "workload" && r.error?.code === code && r.map === maps[0] && r.pmm === of[0].pmm,
    );
    out.push({
      topic: "corpus: refusals",
      text:
        `${code} refused the boot of ${maps.length} of ${total} machines (${listing(pmms)}): ` +
        `${listing(named)}${maps.length > 3 ? ` and ${maps.length - 3} more` : ""}; e.g. ${of[0].message.split("\n")[0]}`,
      command: cited[0].command,
    });
  }
  return out;
}

/** The machines on which the designs rank differently from most. */
function rankingFindings(rows: ResultRow[]): Finding[] {
  return rankingFlips(rows).map((g) => {
    const where = `On ${g.workload} (${g.kmap} mapping, ${g.cpus} CPUs)`;
    const usual = g.usual.join(" < ");
    if (g.flips.length === 0)
      return {
        topic: "corpus: ranking",
        text: `${where}, the designs rank the same on all ${g.machines} machines by memory references per operation: ${usual}.`,
        command: commandForRows(g.usualRows),
      };
    const named = g.flips.slice(0, 5).map((f) => `${machineName(f.map)}: ${f.order.join(" < ")}`);
    const more = g.flips.length > 5 ? ` and ${g.flips.length - 5} more` : "";
    return {
      topic: "corpus: ranking",
      text:
        `${where}, the designs rank ${usual} by memory references per operation on ${g.machines - g.flips.length} of ${g.machines} machines; ` +
        `the ranking flips on ${listing(named)}${more}.`,
      command: commandForRows([...g.usualRows, ...g.flips.slice(0, 5).flatMap((f) => f.rows)]),
    };
  });
}

/** The findings only a sweep over several machines gives (the corpus report). */
function corpusFindings(rows: ResultRow[]): Finding[] {
  if (!isMultiMap(rows)) return [];
  return [
    ...metadataShareFinding(rows),
    ...corpusPageTableFinding(rows),
    ...rankingFindings(rows),
    ...refusalFindings(rows),
  ];
}

export function computeFindings(rows: ResultRow[]): Finding[] {
  return [
    ...corpusFindings(rows),
    ...metadataFinding(rows),
    ...pageTableFinding(rows),
    ...securityFinding(rows),
    ...fragmentationFinding(rows),
    ...refusalFinding(rows),
    ...refsFindings(rows),
    ...tlbFindings(rows),
    ...ipiFindings(rows),
    ...errorFindings(rows),
  ];
}
