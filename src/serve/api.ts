/**
 * The explorer's JSON API, as plain functions of (method, path, query, body) so that tests call them
 * without a socket. Every input is validated (valibot) and every failure is a PagelabError whose code
 * and message the page shows as they are.
 *
 *   GET  /api/options                           presets, PMM designs, kernel-mapping strategies, owners
 *   POST /api/boot   {map, mapBase64?, mapName?, format?, pmm, kmap, levels} -> session id + summary
 *   GET  /api/frames ?session&step&from&to&buckets                   -> strip items (runs or buckets)
 *   GET  /api/frame  ?session&step&pfn                               -> owner, note, map entry, sanitizer changes, VAs
 *   GET  /api/walk   ?session&va                                     -> explainWalk from CR3
 *   GET  /api/table  ?session&pa&level&base                          -> the 512 entries of one table, decoded
 */
import * as v from "valibot";
import { fail, hex, PagelabError } from "../errors.ts";
import { FORMATS, isPresetName, PRESETS } from "../firmware/index.ts";
import { DESIGN_NAMES } from "../kernel/pmm/designs.ts";
import { explainWalk } from "../machine/x86/explain.ts";
import { Access, peekWalk } from "../machine/x86/mmu.ts";
import { decodePte, flagString, Pte, pfnOf, SDM_NAMES } from "../machine/x86/pte.ts";
import { formatVa, LEVEL_SPAN, parseAddress, vaToVpn, vpnLimit } from "../machine/x86/vaddr.ts";
import { KMAP_NAMES } from "../kernel/boot/index.ts";
import { frameInfo, OWNERS, ownerTotals, stripItems } from "./ownership.ts";
import type { FrameInfo, Options, StripItem, Summary, Table, TableEntry, Walk } from "./types.ts";
import { type BootRequest, bootSession, type Session, type SessionStore } from "./session.ts";

export interface ApiReply {
  status: number;
  body: unknown;
}

const MAX_MAP_BYTES = 4 << 20;

const BootBody = v.object({
  map: v.optional(v.pipe(v.string(), v.maxLength(MAX_MAP_BYTES, "the pasted map is larger than 4 MiB"))),
  mapBase64: v.optional(
    v.pipe(v.string(), v.maxLength((MAX_MAP_BYTES * 4) / 3 + 4, "the uploaded map is larger than 4 MiB")),
  ),
  mapName: v.optional(v.pipe(v.string(), v.maxLength(200))),
  format: v.optional(
    v.picklist(["auto", ...FORMATS], `format must be auto or one of ${FORMATS.join(", ")}`),
    "auto",
  ),
  pmm: v.optional(v.picklist(DESIGN_NAMES, `pmm must be one of ${DESIGN_NAMES.join(", ")}`), "buddy"),
  kmap: v.optional(v.picklist(KMAP_NAMES, `kmap must be one of ${KMAP_NAMES.join(", ")}`), "direct"),
  levels: v.optional(v.picklist([4, 5] as const, "levels must be 4 or 5"), 4),
});

const Int = (what: string) => v.pipe(v.string(), v.regex(/^\d{1,15}$/, `${what} must be a decimal integer`));
const Addr = (what: string) =>
  v.pipe(
    v.string(),
    v.regex(/^(0x[0-9a-fA-F_]{1,19}|\d{1,20})$/, `${what} must be a hex (0x...) or decimal address`),
  );
const SessionId = v.pipe(v.string(), v.regex(/^[0-9a-f]{16}$/, "session must be a boot session id"));

const FramesQuery = v.object({
  session: SessionId,
  step: v.optional(Int("step")),
  from: v.optional(Int("from")),
  to: v.optional(Int("to")),
  buckets: v.optional(Int("buckets")),
});
const FrameQuery = v.object({ session: SessionId, step: v.optional(Int("step")), pfn: Int("pfn") });
const WalkQuery = v.object({ session: SessionId, va: v.pipe(v.string(), v.maxLength(40)) });
const TableQuery = v.object({
  session: SessionId,
  pa: v.optional(Addr("pa")),
  level: v.optional(Int("level")),
  base: v.optional(Addr("base")),
});

function parse<T extends v.GenericSchema>(schema: T, input: unknown): v.InferOutput<T> {
  const r = v.safeParse(schema, input);
  if (!r.success) {
    const msgs = r.issues.map((i) => {
      const path = v.getDotPath(i);
      return path ? `${path}: ${i.message}` : i.message;
    });
    fail("BAD_REQUEST", msgs.join("; "));
  }
  return r.output;
}

function stepIndex(s: Session, step: string | undefined): number {
  const n = s.result.bootSteps.length;
  if (step === undefined) return n - 1;
  const i = Number(step);
  if (i < 1 || i > n) fail("BAD_REQUEST", `step must be 1..${n}`);
  return i - 1;
}

export function summary(s: Session): Summary {
  const r = s.result;
  const lay = r.layout;
  return {
    session: s.id,
    map: s.label,
    pmm: r.pmm,
    kmap: r.kmap,
    levels: r.levels,
    ramBytes: r.ramBytes,
    usablePages: r.usablePages,
    freePagesAfterBoot: r.freePagesAfterBoot,
    metadataBytes: r.metadataBytes,
    pageTablePages: r.pageTablePages,
    kernelPhys: r.kernelPhys,
    cr3: hex(r.machine.cpu0.cr3Pfn * 4096),
    bootSteps: r.bootSteps,
    counters: r.counters,
    checks: r.checks,
    hostMs: r.hostMs,
    serverMs: { boot: Math.round(s.bootMs), ownership: Math.round(s.ownershipMs) },
    layout: {
      directMap: formatVa(lay.directMap, lay.levels),
      vmalloc: formatVa(lay.vmalloc, lay.levels),
      regions: formatVa(lay.regions, lay.levels),
      metadata: formatVa(lay.metadata, lay.levels),
      kernelImage: formatVa(lay.kernelImage, lay.levels),
      fixmap: formatVa(lay.fixmap, lay.levels),
      recursiveSlot: lay.recursiveSlot,
    },
    strip: {
      spanEnd: s.ownership.spanEnd,
      ramTop: s.ownership.ramTop,
      owners: [...OWNERS],
      totals: s.ownership.steps.map((_, i) => ownerTotals(s.ownership, i)),
    },
    mapEntries: s.ownership.entries,
  };
}

function frames(
  store: SessionStore,
  q: URLSearchParams,
): { step: number; from: number; to: number; items: StripItem[] } {
  const p = parse(FramesQuery, Object.fromEntries(q));
  const s = store.get(p.session);
  const step = stepIndex(s, p.step);
  const span = s.ownership.spanEnd;
  const from = p.from === undefined ? 0 : Number(p.from);
  const to = p.to === undefined ? s.ownership.ramTop : Number(p.to);
  if (!(from < to) || to > span) fail("BAD_REQUEST", `need from < to <= ${span} (frames)`);
  const buckets = p.buckets === undefined ? 800 : Number(p.buckets);
  if (buckets < 1 || buckets > 4000) fail("BAD_REQUEST", "buckets must be 1..4000");
  return { step: step + 1, from, to, items: stripItems(s.ownership, step, from, to, buckets) };
}

/** Virtual addresses that map a frame: the direct map and the kernel image, checked by a walk. */
function mappedAt(s: Session, pfn: number): string[] {
  const r = s.result;
  const cpu = r.machine.cpu0;
  const candidates: number[] = [];
  if (pfn < vpnLimit(r.levels) / 2) candidates.push(r.layout.directMap + pfn);
  const image = r.owned.find((o) => o.kind === "kernel-image");
  if (image && pfn >= image.start && pfn < image.end)
    candidates.push(r.layout.kernelImage + (pfn - image.start));
  const out: string[] = [];
  for (const vpn of candidates) {
    if (vpn >= vpnLimit(r.levels)) continue;
    const w = peekWalk(cpu, vpn);
    if (w && w.pfn === pfn) out.push(formatVa(vpn, r.levels));
  }
  return out;
}

function frame(store: SessionStore, q: URLSearchParams): FrameInfo {
  const p = parse(FrameQuery, Object.fromEntries(q));
  const s = store.get(p.session);
  const step = stepIndex(s, p.step);
  const pfn = Number(p.pfn);
  if (pfn >= s.ownership.spanEnd) fail("BAD_REQUEST", `pfn must be below ${s.ownership.spanEnd}`);
  return { ...frameInfo(s.ownership, step, pfn), pa: hex(pfn * 4096), mappedAt: mappedAt(s, pfn) };
}

function walk(store: SessionStore, q: URLSearchParams): Walk {
  const p = parse(WalkQuery, Object.fromEntries(q));
  const s = store.get(p.session);
  const va = parseAddress(p.va, "virtual address");
  const { vpn, offset } = vaToVpn(va, s.result.levels);
  return explainWalk(s.result.machine.cpu0, vpn, offset, Access.READ);
}

function table(store: SessionStore, q: URLSearchParams): Table {
  const p = parse(TableQuery, Object.fromEntries(q));
  const s = store.get(p.session);
  const r = s.result;
  const cpu = r.machine.cpu0;
  const levels = r.levels;
  const pa = p.pa === undefined ? cpu.cr3Pfn * 4096 : Number(parseAddress(p.pa, "pa"));
  const level = p.level === undefined ? levels : Number(p.level);
  if (level < 1 || level > levels) fail("BAD_REQUEST", `level must be 1..${levels}`);
  if (pa % 4096 !== 0 || pa >= 2 ** cpu.mem.maxPhysAddrBits)
    fail("BAD_REQUEST", `pa ${hex(pa)} is not a 4 KiB-aligned physical address below MAXPHYADDR`);
  let baseVpn = 0;
  if (p.base !== undefined) {
    baseVpn = vaToVpn(parseAddress(p.base, "base"), levels).vpn;
    const tableSpan = level < levels ? LEVEL_SPAN[level + 1] : vpnLimit(levels);
    if (baseVpn % tableSpan !== 0)
      fail("BAD_REQUEST", `base ${p.base} is not aligned to what one level-${level} table spans`);
  }
  const table = pa / 4096;
  const entries: TableEntry[] = [];
  let present = 0;
  for (let i = 0; i < 512; i++) {
    const lo = cpu.mem.peek32(pa + i * 8);
    const hi = cpu.mem.peek32(pa + i * 8 + 4);
    const d = decodePte(lo, hi, level);
    const isPresent = (lo & Pte.P) !== 0;
    if (isPresent) present++;
    const leaf = isPresent && (level === 1 || ((level === 2 || level === 3) && (lo & Pte.PS) !== 0));
    const recursive = isPresent && !leaf && level === levels && pfnOf(lo, hi) === table;
    entries.push({
      index: i,
      raw: `0x${d.raw.toString(16).padStart(16, "0")}`,
      flags: flagString(lo, hi, level),
      present: isPresent,
      leaf,
      size: leaf ? (level === 1 ? "4K" : level === 2 ? "2M" : "1G") : null,
      target: isPresent ? hex(d.pfn * 4096) : null,
      recursive,
      va: formatVa(baseVpn + i * LEVEL_SPAN[level], levels),
      bits: {
        P: d.present,
        RW: d.writable,
        US: d.user,
        PWT: d.pwt,
        PCD: d.pcd,
        A: d.accessed,
        D: d.dirty,
        PS: level !== 1 && d.ps,
        G: d.global,
        PAT: d.pat,
        NX: d.nx,
        PK: d.pk,
      },
    });
  }
  return {
    pa: hex(pa),
    level,
    name: SDM_NAMES[level],
    base: formatVa(baseVpn, levels),
    present,
    entries,
  };
}

export function options(): Options {
  return {
    presets: [...PRESETS, "qemu:16G", "qemu:1G"],
    formats: ["auto", ...FORMATS],
    pmms: DESIGN_NAMES,
    kmaps: KMAP_NAMES,
    levels: [4, 5],
    owners: [...OWNERS],
  };
}

const BOOT_FIELDS = Object.keys(BootBody.entries);

/** What a route's JSON value is, for "expected an object, got ..." messages. */
function kindOf(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  return typeof x === "string" ? "a string" : typeof x === "object" ? "an object" : `a ${typeof x}`;
}

/** Validate a POST /api/boot body into a boot request (quick: no map is parsed here). */
export function bootRequestOf(body: unknown): BootRequest {
  if (body === undefined) body = {};
  if (typeof body !== "object" || body === null || Array.isArray(body))
    fail(
      "BAD_REQUEST",
      `the body must be a JSON object such as {"map": "qemu:4G", "pmm": "buddy"}, not ${kindOf(body)}`,
    );
  const unknown = Object.keys(body).filter((k) => !BOOT_FIELDS.includes(k));
  if (unknown.length > 0)
    fail(
      "BAD_REQUEST",
      `unknown field${unknown.length > 1 ? "s" : ""} ${unknown
        .slice(0, 5)
        .map((k) => `'${k.slice(0, 40)}'`)
        .join(", ")} (expected ${BOOT_FIELDS.join(", ")})`,
    );
  const b = parse(BootBody, body);
  if (b.map === undefined && b.mapBase64 === undefined)
    fail("BAD_REQUEST", "choose a preset, paste a map or upload a file");
  const format = b.format === "auto" ? undefined : b.format;
  const map =
    b.mapBase64 !== undefined
      ? { base64: b.mapBase64, name: b.mapName, format }
      : isPresetName(b.map!.trim()) && format === undefined
        ? { preset: b.map!.trim() }
        : { text: b.map, name: b.mapName, format };
  return { map, pmm: b.pmm, kmap: b.kmap, levels: b.levels };
}

function boot(store: SessionStore, body: unknown): Summary {
  const s = bootSession(bootRequestOf(body));
  store.add(s);
  return summary(s);
}

/** A PagelabError or an unexpected error as an API reply (never a stack trace). */
export function errorReply(e: unknown): ApiReply {
  if (e instanceof PagelabError) {
    const status = e.code === "NOT_FOUND" || e.code === "NO_SESSION" ? 404 : 400;
    return { status, body: { error: { code: e.code, message: e.message } } };
  }
  const err = e as Error;
  console.error(`pagelab serve: internal error: ${err?.stack ?? String(err)}`);
  const first = String(err?.message ?? err)
    .split("\n")[0]
    .slice(0, 200);
  return { status: 500, body: { error: { code: "INTERNAL", message: `internal error: ${first}` } } };
}

/** Route one API request; PagelabErrors become 4xx replies with {error: {code, message}}. */
export function handleApi(
  store: SessionStore,
  method: string,
  path: string,
  query: URLSearchParams,
  body: unknown,
): ApiReply {
  try {
    const route = `${method} ${path}`;
    switch (route) {
      case "GET /api/options":
        return { status: 200, body: options() };
      case "POST /api/boot":
        return { status: 200, body: boot(store, body) };
      case "GET /api/frames":
        return { status: 200, body: frames(store, query) };
      case "GET /api/frame":
        return { status: 200, body: frame(store, query) };
      case "GET /api/walk":
        return { status: 200, body: walk(store, query) };
      case "GET /api/table":
        return { status: 200, body: table(store, query) };
      default:
        return fail("NOT_FOUND", `no API route ${route}`);
    }
  } catch (e) {
    return errorReply(e);
  }
}
