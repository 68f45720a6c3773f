/**
 * Boot sessions of the web explorer: each POST /api/boot boots a machine and keeps it, with its frame
 * ownership, under a random id. Machines are large (simulated RAM, PMM metadata), so only the few most
 * recently used are kept (LRU); older ids answer NO_SESSION and the page boots again.
 *
 * Maps come as a preset name (never a file path: the server reads no file a request names) or as the
 * text or bytes of a map a user pasted or uploaded, parsed from memory (no temporary file), with the
 * format the user chose or detected. Errors about the map name the input as the page knows it
 * ("pasted map, line 3: ...", "upload dmesg.txt, line 3: ...") and never suggest command-line flags.
 */
import { randomBytes } from "node:crypto";
import { basename } from "node:path";
import { fail, PagelabError } from "../errors.ts";
import { FORMATS, isPresetName, loadBytes, loadMap, type MemoryMap } from "../firmware/index.ts";
import type { Levels } from "../machine/x86/vaddr.ts";
import { type BootResult, bootKernel } from "../kernel/boot/index.ts";
import { buildOwnership, type OwnershipModel } from "./ownership.ts";

export interface MapInput {
  /** A preset name (qemu:4G...). */
  preset?: string;
  /** Pasted or uploaded text. */
  text?: string;
  /** Uploaded bytes, base64. */
  base64?: string;
  /** The upload's file name (for labels and messages). */
  name?: string;
  /** A format name (one of FORMATS) or "auto" / undefined to detect it. */
  format?: string;
}

export interface BootRequest {
  map: MapInput;
  pmm: string;
  kmap: string;
  levels: Levels;
  /** Refuse up front when the boot's estimated host memory exceeds this many bytes. */
  hostBudget?: number;
}

export interface Session {
  id: string;
  label: string;
  result: BootResult;
  map: MemoryMap;
  ownership: OwnershipModel;
  bootMs: number;
  ownershipMs: number;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * A map or boot error as the explorer shows it: `source:3:` becomes `source, line 3:`, and advice
 * naming command-line flags (--format, --mem, --host-budget...) becomes advice about the page's own
 * controls, or is dropped when the page has no such control.
 */
export function forPage(message: string, source?: string): string {
  let m = message;
  if (source) m = m.replace(new RegExp(`${escapeRe(source)}:(\\d+):`, "g"), `${source}, line $1:`);
  m = m.replace(/name it with --format,? one of ([^;.]*)/g, "choose it in the Format menu (one of $1)");
  m = m.replace(/--format\b/g, "the Format menu");
  if (!/(^|[\s(`'"])--[a-z]/.test(m)) return m;
  // Drop the sentences or clauses that still suggest a flag.
  const parts = m.split(/(?<=[.;])\s+/);
  const kept = parts.filter((p) => !/(^|[\s(`'"])--[a-z]/.test(p));
  return kept.length > 0 ? kept.join(" ").replace(/;$/, ".") : m.replace(/--([a-z][\w-]*)/g, "$1");
}

/** Rethrow a PagelabError with its message made fit for the page. */
function pageError(e: unknown, source?: string, pmm?: string): never {
  if (e instanceof PagelabError) {
    let m = forPage(e.message, source);
    if (e.code === "HOST_MEMORY")
      m += ` Boot a smaller map${pmm === "bitmap" ? "" : " or pick a design with smaller metadata (bitmap)"}.`;
    throw new PagelabError(e.code, m, e.details);
  }
  throw e;
}

/** Parse the map of a request (preset, pasted text or uploaded bytes) without touching the disk. */
export function loadInputMap(input: MapInput): { map: MemoryMap; label: string; source: string } {
  const given = [input.preset, input.text, input.base64].filter((x) => x !== undefined).length;
  if (given !== 1) fail("BAD_REQUEST", "give exactly one of map.preset, map.text or map.base64");
  const format = input.format === undefined || input.format === "auto" ? undefined : input.format;
  if (format !== undefined && !(FORMATS as readonly string[]).includes(format))
    fail("BAD_FORMAT", `unknown format '${format}' (expected auto or one of ${FORMATS.join(", ")})`);
  if (input.preset !== undefined) {
    if (!isPresetName(input.preset))
      fail(
        "BAD_PRESET",
        `'${input.preset}' is not a preset (qemu:SIZE, qemu-q35:SIZE, ovmf:512M, sparse, numa:NxSIZE)`,
      );
    try {
      return { map: loadMap(input.preset), label: input.preset, source: input.preset };
    } catch (e) {
      return pageError(e, input.preset);
    }
  }
  const bytes =
    input.text !== undefined
      ? new TextEncoder().encode(input.text)
      : Buffer.from(input.base64 ?? "", "base64");
  if (bytes.length === 0) fail("EMPTY", "the map is empty: paste a table or choose a file");
  const name = input.name ? basename(input.name).replace(/[^\w.-]/g, "_") || "upload" : undefined;
  const source = name ? `upload ${name}` : "pasted map";
  const label = name ? `upload: ${name}` : "pasted map";
  try {
    return { map: loadBytes(bytes, { format, source }), label, source };
  } catch (e) {
    return pageError(e, source);
  }
}

/** Boot one machine from a request (throws PagelabError on bad maps or options). */
export function bootSession(req: BootRequest): Session {
  const { map, label, source } = loadInputMap(req.map);
  const t0 = performance.now();
  let result: BootResult;
  try {
    result = bootKernel({
      map: label,
      loadedMap: map,
      pmm: req.pmm,
      kmap: req.kmap,
      levels: req.levels,
      hostBudget: req.hostBudget,
    });
  } catch (e) {
    return pageError(e, source, req.pmm);
  }
  const bootMs = performance.now() - t0;
  result.map = label;
  const t1 = performance.now();
  const ownership = buildOwnership(result, map);
  return {
    id: randomBytes(8).toString("hex"),
    label,
    result,
    map,
    ownership,
    bootMs,
    ownershipMs: performance.now() - t1,
  };
}

/** The few most recently used sessions. */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(readonly capacity = 4) {}

  add(s: Session): void {
    this.sessions.set(s.id, s);
    while (this.sessions.size > this.capacity) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
  }

  get(id: string): Session {
    const s = this.sessions.get(id);
    if (!s)
      fail(
        "NO_SESSION",
        `no boot session '${id}' (sessions expire after ${this.capacity} newer boots): boot again`,
      );
    this.sessions.delete(id);
    this.sessions.set(id, s);
    return s;
  }

  get size(): number {
    return this.sessions.size;
  }
}
