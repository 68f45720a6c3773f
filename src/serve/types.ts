/**
 * The explorer's JSON API on the wire: the one definition of each reply's shape. The server's
 * handlers (api.ts) are typed with these, and the web client (web/src/api.ts) imports them, so the two
 * cannot drift apart. Standalone on purpose: no imports, so the browser build reads it as it is.
 */

export interface Options {
  presets: string[];
  /** "auto" and every map format name (dmesg, sysfs, iomem, json...). */
  formats?: string[];
  pmms: string[];
  kmaps: string[];
  levels: number[];
  owners: string[];
}

export interface BootStep {
  step: number;
  title: string;
  log: string[];
  /** What memblock allocated during the step; `kind` is the owner the explorer paints. */
  allocated: { what: string; pa: string; bytes: number; kind: string }[];
  counters: Record<string, number>;
}

export interface Summary {
  session: string;
  map: string;
  pmm: string;
  kmap: string;
  levels: number;
  ramBytes: number;
  usablePages: number;
  freePagesAfterBoot: number;
  metadataBytes: number;
  pageTablePages: number;
  kernelPhys: string;
  cr3: string;
  bootSteps: BootStep[];
  counters: Record<string, number>;
  checks: string[];
  hostMs: number;
  serverMs: { boot: number; ownership: number };
  layout: Record<string, string | number>;
  strip: { spanEnd: number; ramTop: number; owners: string[]; totals: Record<string, number>[] };
  mapEntries: { start: number; end: number; type: string }[];
}

export interface StripItem {
  s: number;
  e: number;
  parts: [number, number][];
  note?: string;
}

export interface FrameInfo {
  pfn: number;
  pa: string;
  owner: string;
  note: string;
  run: { start: number; end: number };
  entry: { start: number; end: number; type: string } | null;
  changes: { kind: string; message: string }[];
  mappedAt: string[];
}

export interface WalkStep {
  level: number;
  entry: string;
  index: number;
  tablePa: string;
  entryPa: string;
  raw: string;
  flags: string;
  meaning: string;
}

export interface Walk {
  va: string;
  cr3: string;
  levels: number;
  steps: WalkStep[];
  pa: string | null;
  pageSize: string | null;
  fault: { errorCode: number; bits: string[]; cr2: string } | null;
}

export interface TableEntry {
  index: number;
  raw: string;
  flags: string;
  present: boolean;
  leaf: boolean;
  size: string | null;
  target: string | null;
  recursive: boolean;
  va: string;
  bits: Record<string, boolean | number>;
}

export interface Table {
  pa: string;
  level: number;
  name: string;
  base: string;
  present: number;
  entries: TableEntry[];
}
