/**
 * Page tables rendered in the formats users already read:
 *
 *  - `ptdump`: Linux's /sys/kernel/debug/page_tables/kernel (arch/x86/mm/dump_pagetables.c): runs of
 *    entries with the same flags, level and effective rights, one line each:
 *      0xffff888000000000-0xffff888100000000           4G     RW         PSE         GLB NX pud
 *    with `---[ name ]---` markers for regions.
 *  - `infoTlb`: QEMU's monitor `info tlb` (target/i386/monitor.c): one line per present leaf,
 *      ffff888000000000: 0000000000000000 XG-DA---W      (flags: X G P D A C T U W)
 *  - `infoMem`: QEMU's `info mem`: ranges of equal user/write rights ANDed over the levels,
 *      ffff888000000000-ffff888100000000 0000000100000000 -rw
 *
 * All three read the tables with uncounted peeks. A table pointer at or above 2^MAXPHYADDR is not
 * followed (nothing can be read there; the MMU faults on it with RSVD): `infoTlb` lists no leaves under
 * it and `infoMem` no range, as QEMU's monitor does, and `ptdump` shows its span as a hole at its level,
 * as Linux's page walker does for a bad entry. The rest of the tree is listed. `checkTree` reports it.
 */
import type { PhysMem } from "../phys-mem.ts";
import { forEachEntry, forEachLeaf } from "./inspect.ts";
import { Pte, PteHi, pfnOf } from "./pte.ts";
import { TlbPerm } from "./tlb.ts";
import { type Levels, vaBits, vpnLimit, vpnToVa } from "./vaddr.ts";

export interface Marker {
  vpn: number;
  name: string;
}

function hex16(v: bigint): string {
  return v.toString(16).padStart(16, "0");
}

/** Linux level name of a table level (1 = PT): pte, pmd, pud, then p4d/pgd. */
function linuxLevelName(level: number, levels: Levels): string {
  if (level === levels) return "pgd";
  return ["", "pte", "pmd", "pud", "p4d"][level];
}

/** Linux's printk_prot(): the 30-column flag field for an entry at `level`. */
function ptdumpProt(lo: number, hi: number, level: number, present: boolean): string {
  if (!present) return " ".repeat(30);
  let s = (lo & Pte.US) !== 0 ? "USR " : "    ";
  s += (lo & Pte.RW) !== 0 ? "RW " : "ro ";
  s += (lo & Pte.PWT) !== 0 ? "PWT " : "    ";
  s += (lo & Pte.PCD) !== 0 ? "PCD " : "    ";
  s += level >= 2 && (lo & Pte.PS) !== 0 ? "PSE " : "    ";
  const pat =
    level === 1 ? (lo & Pte.PAT4K) !== 0 : (level === 2 || level === 3) && (lo & Pte.PAT_LARGE) !== 0;
  s += pat ? "PAT " : "    ";
  s += (lo & Pte.G) !== 0 ? "GLB " : "    ";
  s += (hi & PteHi.XD) !== 0 ? "NX " : "x  ";
  return s;
}

/** Linux's size column: "%9lu%c " with units B K M G T P E. */
function sizeField(bytes: bigint): string {
  const units = "BKMGTPE";
  let u = 0;
  let d = bytes;
  while ((d & 1023n) === 0n && u < units.length - 1 && d !== 0n) {
    d >>= 10n;
    u++;
  }
  return `${d.toString().padStart(9)}${units[u]} `;
}

export function ptdump(mem: PhysMem, root: number, levels: Levels, markers: Marker[] = []): string {
  const half = vpnLimit(levels) / 2;
  const all = [{ vpn: 0, name: "User Space" }, { vpn: half, name: "Kernel Space" }, ...markers].sort(
    (a, b) => a.vpn - b.vpn,
  );
  const out: string[] = [];
  let mi = 0;
  let start = 0;
  let curKey = "";
  let curLine = "";
  let curLevel = 0;
  // The user half ends at the first non-canonical address (0x0000800000000000), printed as such; the
  // last range ends where the address space wraps (0x0000000000000000), as Linux prints it.
  const endAddress = (vpn: number): bigint =>
    vpn >= vpnLimit(levels) ? 0n : vpn === half ? BigInt(vpn) << 12n : vpnToVa(vpn, levels);
  const flush = (end: number): void => {
    const a = vpnToVa(start, levels);
    const b = endAddress(end);
    const bytes = BigInt(end - start) << 12n;
    out.push(
      `0x${hex16(a)}-0x${hex16(b)}   ${sizeField(bytes)}${curLine}${linuxLevelName(curLevel, levels)}`,
    );
  };
  out.push(`---[ ${all[0].name} ]---`);
  const note = (vpn: number, level: number, lo: number, hi: number, eff: number): void => {
    const present = (lo & Pte.P) !== 0;
    // The entry's own flags (Linux's PTE_FLAGS_MASK): bits 0-8, PAT of large leaves, XD and PK.
    const own = lo & (level === 1 ? 0x1ff : 0x11ff);
    const flags = present ? `${own}:${(hi & (PteHi.XD | PteHi.PK_MASK)) >>> 0}:${eff}` : "0";
    const key = `${flags}/${level}`;
    const crossing = mi + 1 < all.length && vpn >= all[mi + 1].vpn;
    if (curKey === "") {
      curKey = key;
      curLine = ptdumpProt(lo, hi, level, present);
      curLevel = level;
      start = vpn;
      return;
    }
    if (key === curKey && !crossing) return;
    flush(vpn);
    while (mi + 1 < all.length && vpn >= all[mi + 1].vpn) {
      mi++;
      out.push(`---[ ${all[mi].name} ]---`);
    }
    curKey = key;
    curLine = ptdumpProt(lo, hi, level, present);
    curLevel = level;
    start = vpn;
  };
  forEachEntry(mem, root, levels, (e) => {
    if (e.badTable) {
      note(e.vpn, e.level, 0, 0, 0);
      return undefined;
    }
    const present = (e.lo & Pte.P) !== 0;
    if (present && !e.leaf) return true;
    note(e.vpn, e.level, e.lo, e.hi, present ? e.perm & (TlbPerm.RW | TlbPerm.US | TlbPerm.XD) : 0);
    return undefined;
  });
  flush(vpnLimit(levels));
  return `${out.join("\n")}\n`;
}

/** QEMU `info tlb`: one line per present leaf (4 KiB pages one by one). */
export function infoTlb(mem: PhysMem, root: number, levels: Levels): string {
  const lines: string[] = [];
  forEachLeaf(mem, root, levels, (l) => {
    // QEMU masks PSE out of a 4 KiB PTE (there it is the PAT bit) and the PAT bit out of a large leaf's address.
    const lo = l.shift === 0 ? l.lo & ~Pte.PS : l.lo;
    const pa = BigInt(l.base) << 12n;
    const f =
      ((l.hi & PteHi.XD) !== 0 ? "X" : "-") +
      ((lo & Pte.G) !== 0 ? "G" : "-") +
      ((lo & Pte.PS) !== 0 ? "P" : "-") +
      ((lo & Pte.D) !== 0 ? "D" : "-") +
      ((lo & Pte.A) !== 0 ? "A" : "-") +
      ((lo & Pte.PCD) !== 0 ? "C" : "-") +
      ((lo & Pte.PWT) !== 0 ? "T" : "-") +
      ((lo & Pte.US) !== 0 ? "U" : "-") +
      ((lo & Pte.RW) !== 0 ? "W" : "-");
    lines.push(`${hex16(vpnToVa(l.vpn, levels))}: ${hex16(pa)} ${f}`);
  });
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

/** QEMU's addr_canonical(): sign-extend bit 47 (or 56 with LA57) of a raw address. */
function canonical(raw: bigint, levels: Levels): bigint {
  const bits = BigInt(vaBits(levels));
  const m = (1n << 64n) - 1n;
  let a = raw & m;
  if ((a >> (bits - 1n)) & 1n) a |= m ^ ((1n << bits) - 1n);
  return a;
}

/** QEMU `info mem`: ranges of equal (user, write) rights, ANDed over levels, holes omitted. */
export function infoMem(mem: PhysMem, root: number, levels: Levels): string {
  const lines: string[] = [];
  let start = -1n;
  let last = 0;
  const print = (rawEnd: bigint, prot: number): void => {
    if (prot === last) return;
    if (start !== -1n) {
      const u = (last & Pte.US) !== 0 ? "u" : "-";
      const w = (last & Pte.RW) !== 0 ? "w" : "-";
      lines.push(
        `${hex16(canonical(start, levels))}-${hex16(canonical(rawEnd, levels))} ${hex16(canonical(rawEnd - start, levels))} ${u}r${w}`,
      );
    }
    start = prot !== 0 ? rawEnd : -1n;
    last = prot;
  };
  const limit = mem.limit;
  const walk = (table: number, level: number, vpnBase: number, acc: number): void => {
    const span = 2 ** ((level - 1) * 9);
    for (let i = 0; i < 512; i++) {
      const pa = table * 4096 + i * 8;
      const lo = mem.peek32(pa);
      const raw = BigInt(vpnBase + i * span) << 12n;
      if ((lo & Pte.P) === 0) {
        print(raw, 0);
        continue;
      }
      const prot = lo & acc & (Pte.US | Pte.RW | Pte.P);
      if (level === 1 || ((level === 2 || level === 3) && (lo & Pte.PS) !== 0)) {
        print(raw, prot);
        continue;
      }
      const next = pfnOf(lo, mem.peek32(pa + 4));
      // A table beyond MAXPHYADDR holds no entries: a hole, as in QEMU.
      if (next * 4096 >= limit) print(raw, 0);
      else walk(next, level - 1, vpnBase + i * span, prot);
    }
  };
  walk(root, levels, 0, Pte.US | Pte.RW | Pte.P);
  print(1n << BigInt(vaBits(levels)), 0);
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}
