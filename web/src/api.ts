/** The explorer's view of the server API (src/serve/api.ts): its types (src/serve/types.ts) and fetch helpers. */

export const OWNER_LABELS: Record<string, string> = {
  free: "free",
  "kernel-image": "kernel image",
  "page-table": "page table",
  "pmm-metadata": "PMM metadata",
  slab: "slab",
  user: "user",
  allocated: "allocated",
  reserved: "reserved",
  hole: "hole",
};

export const OWNER_COLOURS: Record<string, string> = {
  free: "#8fd18f",
  "kernel-image": "#4a6fd6",
  "page-table": "#e0523f",
  "pmm-metadata": "#e8a33b",
  slab: "#b65fd0",
  user: "#3bb7c4",
  allocated: "#8a8f98",
  reserved: "#4b4f57",
  hole: "#eceef1",
};

export type {
  Options,
  BootStep,
  Summary,
  StripItem,
  FrameInfo,
  WalkStep,
  Walk,
  TableEntry,
  Table,
} from "../../src/serve/types.ts";

import type { FrameInfo, Options, StripItem, Summary, Table, Walk } from "../../src/serve/types.ts";

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** This tab's id: the server runs one boot at a time per client. */
const CLIENT_ID = Math.random().toString(36).slice(2, 14).padEnd(12, "0");

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  let res: Response;
  try {
    const headers = {
      ...(init?.headers as Record<string, string> | undefined),
      "x-pagelab-client": CLIENT_ID,
    };
    res = await fetch(path, { ...init, headers });
  } catch (e) {
    throw new ApiError(
      "NETWORK",
      `the pagelab server did not answer (${String(e)}): is \`pagelab serve\` running?`,
    );
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = body?.error;
    throw new ApiError(err?.code ?? String(res.status), err?.message ?? `HTTP ${res.status}`);
  }
  return body as T;
}

function qs(params: Record<string, string | number | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.set(k, String(v));
  return u.toString();
}

export const api = {
  options: () => call<Options>("api/options"),
  boot: (body: {
    map?: string;
    mapBase64?: string;
    mapName?: string;
    format?: string;
    pmm: string;
    kmap: string;
    levels: number;
  }) =>
    call<Summary>("api/boot", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  frames: (session: string, step: number, from: number, to: number, buckets: number) =>
    call<{ items: StripItem[] }>(`api/frames?${qs({ session, step, from, to, buckets })}`),
  frame: (session: string, step: number, pfn: number) =>
    call<FrameInfo>(`api/frame?${qs({ session, step, pfn })}`),
  walk: (session: string, va: string) => call<Walk>(`api/walk?${qs({ session, va })}`),
  table: (session: string, pa?: string, level?: number, base?: string) =>
    call<Table>(`api/table?${qs({ session, pa, level, base })}`),
};

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}
