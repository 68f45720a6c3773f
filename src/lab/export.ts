/**
 * Page tables out of pagelab and back in: a sparse physical image that an external walker (QEMU, a
 * debugger, a script) can load and check.
 *
 *   DIR/pages.bin     every page-table page reachable from the root, 4 KiB each, concatenated in
 *                     ascending physical order
 *   DIR/index.json    {"cr3": "0x…", "levels": 4|5, "pages": [{"pa": "0x…", "offset": n}, …]}
 *                     (`offset` is the byte offset of the page in pages.bin, a multiple of 4096)
 *   DIR/info-tlb.txt  pagelab's own list of every leaf mapping, in QEMU's `info tlb` format
 *
 * Which pages: the walk starts at the root and follows every present entry that is not a leaf, as
 * hardware would (blind: an entry is followed wherever it points, so a recursive slot re-enters the
 * tree). A page is visited at most once per level and written once; depth is bounded by the paging
 * levels, so recursive slots terminate. Leaves (4 KiB pages, PS=1 PDEs and PDPTEs) are never
 * followed: their frames are data, not tables. Reads are uncounted (`peek32`).
 *
 * Guarantees: `importPageTables(exportPageTables(…))` gives a PhysMem holding the same table pages,
 * so `infoTlb` and every walk of the import equal those of the original. Nothing but the three files
 * is written.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fail, hex } from "../errors.ts";
import { PAGE_SIZE, PhysMem } from "../machine/phys-mem.ts";
import { infoTlb } from "../machine/x86/dump.ts";
import { Pte, pfnOf } from "../machine/x86/pte.ts";
import type { Levels } from "../machine/x86/vaddr.ts";

export interface ExportIndex {
  cr3: string;
  levels: Levels;
  pages: { pa: string; offset: number }[];
}

export interface ExportResult {
  dir: string;
  /** Frame numbers of the exported table pages, ascending. */
  tables: number[];
  /** Bytes written to pages.bin. */
  bytes: number;
  /** Number of lines in info-tlb.txt (present leaves). */
  leaves: number;
}

export interface ImportResult {
  mem: PhysMem;
  /** Frame of the root table (CR3 >> 12). */
  root: number;
  levels: Levels;
  tables: number[];
}

/**
 * Frames of every page-table page reachable from `root`, ascending. A frame reached at several levels
 * (a recursive slot) is listed once.
 */
export function reachableTables(mem: PhysMem, root: number, levels: Levels): number[] {
  checkLevels(levels);
  const tables = new Set<number>();
  const seen = new Set<string>();
  const visit = (table: number, level: number): void => {
    const key = `${table}/${level}`;
    if (seen.has(key)) return;
    seen.add(key);
    tables.add(table);
    if (level === 1) return;
    for (let i = 0; i < 512; i++) {
      const pa = table * PAGE_SIZE + i * 8;
      const lo = mem.peek32(pa);
      if ((lo & Pte.P) === 0) continue;
      if ((level === 2 || level === 3) && (lo & Pte.PS) !== 0) continue; // a large leaf
      const next = pfnOf(lo, mem.peek32(pa + 4));
      if (next * PAGE_SIZE >= mem.limit) {
        fail(
          "EXPORT_BAD_TABLE",
          `level-${level} entry ${i} of table ${hex(table * PAGE_SIZE)} points to ${hex(next * PAGE_SIZE)}, beyond MAXPHYADDR (${mem.maxPhysAddrBits} bits)`,
        );
      }
      visit(next, level - 1);
    }
  };
  visit(root, levels);
  return [...tables].sort((a, b) => a - b);
}

/** Write `pages.bin`, `index.json` and `info-tlb.txt` for the tree at `root` into `dir` (created if needed). */
export function exportPageTables(mem: PhysMem, root: number, levels: Levels, dir: string): ExportResult {
  checkLevels(levels);
  if (!Number.isInteger(root) || root < 0 || root * PAGE_SIZE >= mem.limit) {
    fail("EXPORT_BAD_ROOT", `root table frame ${root} is not a frame below MAXPHYADDR`);
  }
  const tables = reachableTables(mem, root, levels);
  const bin = new Uint8Array(tables.length * PAGE_SIZE);
  const pages: ExportIndex["pages"] = [];
  tables.forEach((t, i) => {
    bin.set(mem.readBytes(t * PAGE_SIZE, PAGE_SIZE), i * PAGE_SIZE);
    pages.push({ pa: hex(t * PAGE_SIZE), offset: i * PAGE_SIZE });
  });
  const index: ExportIndex = { cr3: hex(root * PAGE_SIZE), levels, pages };
  const tlb = infoTlb(mem, root, levels);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "pages.bin"), bin);
    writeFileSync(join(dir, "index.json"), `${JSON.stringify(index, null, 2)}\n`);
    writeFileSync(join(dir, "info-tlb.txt"), tlb);
  } catch (e) {
    fail("EXPORT_WRITE", `cannot write the page-table export to ${dir}: ${(e as Error).message}`);
  }
  return { dir, tables, bytes: bin.length, leaves: tlb === "" ? 0 : tlb.split("\n").length - 1 };
}

/** Parse and check an index.json text; `where` names the file in messages. */
export function parseExportIndex(text: string, where: string, binBytes?: number): ExportIndex {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail("EXPORT_BAD_INDEX", `${where}: not JSON (${(e as Error).message})`);
  }
  const o = raw as Record<string, unknown>;
  if (typeof o !== "object" || o === null || Array.isArray(o))
    fail("EXPORT_BAD_INDEX", `${where}: not an object`);
  const keys = Object.keys(o).sort().join(",");
  if (keys !== "cr3,levels,pages") {
    fail(
      "EXPORT_BAD_INDEX",
      `${where}: expected exactly the keys cr3, levels, pages; found ${keys || "none"}`,
    );
  }
  if (typeof o.cr3 !== "string" || !isPageAddress(o.cr3)) {
    fail(
      "EXPORT_BAD_INDEX",
      `${where}: cr3 must be a 4 KiB-aligned hex address string, got ${JSON.stringify(o.cr3)}`,
    );
  }
  if (o.levels !== 4 && o.levels !== 5) {
    fail("EXPORT_BAD_INDEX", `${where}: levels must be 4 or 5, got ${JSON.stringify(o.levels)}`);
  }
  if (!Array.isArray(o.pages)) fail("EXPORT_BAD_INDEX", `${where}: pages must be an array`);
  const seen = new Set<string>();
  o.pages.forEach((p: unknown, i: number) => {
    const e = p as Record<string, unknown>;
    const at = `${where}: pages[${i}]`;
    if (typeof e !== "object" || e === null) fail("EXPORT_BAD_INDEX", `${at} is not an object`);
    if (typeof e.pa !== "string" || !isPageAddress(e.pa)) {
      fail(
        "EXPORT_BAD_INDEX",
        `${at}.pa must be a 4 KiB-aligned hex address string, got ${JSON.stringify(e.pa)}`,
      );
    }
    const off = e.offset;
    if (typeof off !== "number" || !Number.isInteger(off) || off < 0 || off % PAGE_SIZE !== 0) {
      fail(
        "EXPORT_BAD_INDEX",
        `${at}.offset must be a non-negative multiple of 4096, got ${JSON.stringify(off)}`,
      );
    }
    if (binBytes !== undefined && off + PAGE_SIZE > binBytes) {
      fail("EXPORT_BAD_INDEX", `${at}.offset ${off} is past the end of pages.bin (${binBytes} bytes)`);
    }
    const key = BigInt(e.pa).toString(16);
    if (seen.has(key)) fail("EXPORT_BAD_INDEX", `${at}.pa ${e.pa} is listed twice`);
    seen.add(key);
  });
  return o as unknown as ExportIndex;
}

export interface ImportOptions {
  /** MAXPHYADDR of the PhysMem to create (default 52, so every exported address fits). */
  maxPhysAddrBits?: number;
}

/** Load an export back into a fresh PhysMem (table pages only; everything else reads as zero). */
export function importPageTables(dir: string, opts: ImportOptions = {}): ImportResult {
  let bin: Buffer;
  let text: string;
  try {
    bin = readFileSync(join(dir, "pages.bin"));
    text = readFileSync(join(dir, "index.json"), "utf8");
  } catch (e) {
    fail("EXPORT_READ", `cannot read a page-table export from ${dir}: ${(e as Error).message}`);
  }
  const index = parseExportIndex(text, join(dir, "index.json"), bin.length);
  const mem = new PhysMem({ maxPhysAddrBits: opts.maxPhysAddrBits ?? 52 });
  const tables: number[] = [];
  for (const p of index.pages) {
    const pa = Number(BigInt(p.pa));
    mem.checkRange(pa, PAGE_SIZE);
    mem.writeBytes(pa, new Uint8Array(bin.buffer, bin.byteOffset + p.offset, PAGE_SIZE));
    tables.push(pa / PAGE_SIZE);
  }
  const cr3 = Number(BigInt(index.cr3));
  if (!tables.includes(cr3 / PAGE_SIZE)) {
    fail(
      "EXPORT_BAD_INDEX",
      `${join(dir, "index.json")}: the root table ${index.cr3} is not among the pages`,
    );
  }
  return { mem, root: cr3 / PAGE_SIZE, levels: index.levels, tables: tables.sort((a, b) => a - b) };
}

function isPageAddress(s: string): boolean {
  return /^0x[0-9a-f]+$/i.test(s) && BigInt(s) % 4096n === 0n && BigInt(s) < 1n << 52n;
}

function checkLevels(levels: number): void {
  if (levels !== 4 && levels !== 5) fail("BAD_LEVELS", `paging levels must be 4 or 5, got ${levels}`);
}
