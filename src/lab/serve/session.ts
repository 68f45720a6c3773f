/**
 * Boot sessions of the web explorer: each POST /api/boot boots a machine and keeps it, with its frame
 * ownership, under a random id. Machines are large (simulated RAM, PMM metadata), so only the few most
 * recently used are kept (LRU); older ids answer NO_SESSION and the page boots again.
 *
 * Maps come as a preset name (never a file path: the server reads no file a request names) or as the
 * text or bytes of a map a user pasted or uploaded, parsed through a private temporary file so that
 * format detection sees the upload's own name.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fail } from "../../errors.ts";
import { type MemoryMap, isPresetName, loadMap } from "../../firmware/index.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { type BootResult, bootKernel } from "../boot.ts";
import { type OwnershipModel, buildOwnership } from "./ownership.ts";

export interface MapInput {
  /** A preset name (qemu:4G...). */
  preset?: string;
  /** Pasted or uploaded text. */
  text?: string;
  /** Uploaded bytes, base64. */
  base64?: string;
  /** The upload's file name (for format detection and labels). */
  name?: string;
}

export interface BootRequest {
  map: MapInput;
  pmm: string;
  kmap: string;
  levels: Levels;
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

/** Boot one machine from a request (throws PagelabError on bad maps or options). */
export function bootSession(req: BootRequest): Session {
  const input = req.map;
  const given = [input.preset, input.text, input.base64].filter((x) => x !== undefined).length;
  if (given !== 1) fail("BAD_REQUEST", "give exactly one of map.preset, map.text or map.base64");
  let dir: string | null = null;
  try {
    let path: string;
    let label: string;
    if (input.preset !== undefined) {
      if (!isPresetName(input.preset))
        fail(
          "BAD_PRESET",
          `'${input.preset}' is not a preset (qemu:SIZE, qemu-q35:SIZE, ovmf:512M, sparse, numa:NxSIZE)`,
        );
      path = input.preset;
      label = input.preset;
    } else {
      const bytes =
        input.text !== undefined
          ? new TextEncoder().encode(input.text)
          : Buffer.from(input.base64 ?? "", "base64");
      if (bytes.length === 0) fail("EMPTY", "the map is empty: paste a table or choose a file");
      const name = basename(input.name ?? "pasted.txt").replace(/[^\w.-]/g, "_") || "pasted.txt";
      dir = mkdtempSync(join(tmpdir(), "pagelab-serve-"));
      path = join(dir, name);
      writeFileSync(path, bytes);
      label = input.name ? `upload: ${name}` : "pasted map";
    }
    const map = loadMap(path);
    const t0 = performance.now();
    const result = bootKernel({ map: path, pmm: req.pmm, kmap: req.kmap, levels: req.levels });
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
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
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
