/**
 * The address space and the cases the probe kernel runs, built with pagelab's own Mapper.
 *
 * Probe's own mappings (root slot 0, never touched by a case):
 *   0 .. 16 MiB        identity, 2 MiB leaves, supervisor RW executable (code, stacks, tables, plan)
 *   USER_RIP_VA        the probe's user page (PA 0x101000), user read-only executable
 *   USER_STACK_VA      the user stack (PA 0x400000), user RW
 *
 * Test mappings (high half, separate upper-level entries), all leading to the RET pad at 0x600000:
 *   0xffff800000000000  4 KiB leaves, one per protection (S/U x RW/RO x X/NX)
 *   0xffff800040000000  2 MiB leaves, same protections
 *   0xffff800080000000  1 GiB leaves (frame 0, accessed at +0x600000), same protections
 *   0xffff810000000000… one root-level slot each for upper-level rights (RO PDE, supervisor PDPTE,
 *                       XD in the PML4E), reserved bits (PS in a PML4E, bit 13 of a 2 MiB leaf,
 *                       address bit 51) and non-present entries
 *   root slot 300        recursive (supervisor, RW, NX): the root table itself as a page
 *
 * Cases: every test leaf x {read, write, fetch} x {CPL0, CPL3} x {base, WP=0, NXE=0, SMEP, SMAP,
 * SMAP+AC}; the special slots x {read, write, fetch} x CPL x {base, WP=0, NXE=0}; locked RMWs.
 * Base controls: CR0.WP=1, EFER.NXE=1, SMEP=SMAP=0.
 */
import { Machine } from "../../machine/machine.ts";
import { type FrameSource, Mapper } from "../../machine/x86/mapper.ts";
import { PAGE_1G, PAGE_2M, PAGE_4K, type PageShift, type Prot, Pte, pfnOf } from "../../machine/x86/pte.ts";
import { type Levels, tableIndex, vaToVpn, vpnToVa } from "../../machine/x86/vaddr.ts";
import {
  Ctl,
  PROBE_PAD_PA,
  PROBE_TABLES_PFN,
  PROBE_USER_PAGE_PA,
  PROBE_USER_STACK_PA,
  type ProbeKind,
} from "./probe.ts";

export const USER_RIP_VA = 0x10000000n;
/** Root-table slot that points back at the root (recursive mapping), and an unused root entry. */
export const RECURSIVE_SLOT = 300;
export const RECURSIVE_SCRATCH = 400;
export const USER_STACK_VA = 0x10010000n;

export const PROTS: { name: string; prot: Prot }[] = [
  { name: "S-RW-X", prot: { write: true } },
  { name: "S-RO-X", prot: {} },
  { name: "S-RW-NX", prot: { write: true, nx: true } },
  { name: "U-RW-X", prot: { user: true, write: true } },
  { name: "U-RO-X", prot: { user: true } },
  { name: "U-RW-NX", prot: { user: true, write: true, nx: true } },
];

export const CONTROL_SETS: { name: string; ctl: number }[] = [
  { name: "base", ctl: Ctl.WP | Ctl.NXE },
  { name: "WP=0", ctl: Ctl.NXE },
  { name: "NXE=0", ctl: Ctl.WP },
  { name: "SMEP", ctl: Ctl.WP | Ctl.NXE | Ctl.SMEP },
  { name: "SMAP", ctl: Ctl.WP | Ctl.NXE | Ctl.SMAP },
  { name: "SMAP+AC", ctl: Ctl.WP | Ctl.NXE | Ctl.SMAP | Ctl.AC },
];

const KINDS: ProbeKind[] = ["read", "write", "fetch"];

export interface CaseSpec {
  id: number;
  label: string;
  va: bigint;
  kind: ProbeKind;
  ctl: number;
  /** Leaf size the case touches (0, 9, 18), or -1 where nothing maps it. */
  shift: number;
  /** Physical addresses of the entries on the walk's path, root first. */
  path: number[];
}

export interface ProbeSpace {
  machine: Machine;
  mapper: Mapper;
  levels: Levels;
  cases: CaseSpec[];
}

class Frames implements FrameSource {
  next = PROBE_TABLES_PFN;
  allocFrame(): number {
    return this.next < PROBE_TABLES_PFN + 0x800 ? this.next++ : -1;
  }
  freeFrame(): void {}
}

/** Physical addresses of the entries a walk of `va` reads: stops after a non-present entry or a leaf. */
export function walkPath(m: Machine, root: number, levels: Levels, va: bigint): number[] {
  const { vpn } = vaToVpn(va, levels);
  const out: number[] = [];
  let table = root;
  for (let level: number = levels; level >= 1; level--) {
    const pa = table * 4096 + tableIndex(vpn, level) * 8;
    out.push(pa);
    const lo = m.mem.peek32(pa);
    if ((lo & Pte.P) === 0 || level === 1) break;
    if ((lo & Pte.PS) !== 0) break; // a leaf (levels 2, 3) or a reserved PS (levels 4, 5): the walk ends
    table = pfnOf(lo, m.mem.peek32(pa + 4));
  }
  return out;
}

function entryPa(m: Machine, root: number, levels: Levels, va: bigint, level: number): number {
  return walkPath(m, root, levels, va)[levels - level];
}

type Vpn = (va: bigint) => number;
/** A test leaf: the label and address the cases use, and its leaf size. */
type Target = { label: string; va: bigint; shift: PageShift };
/** A special slot: `reads` when only reads are probed. */
type Special = { label: string; va: bigint; shift: number; reads?: boolean };
type AddCase = (label: string, va: bigint, kind: ProbeKind, ctl: number, shift: number) => void;

/** The probe's own mappings: 16 MiB identity in 2 MiB leaves, the user page and the user stack. */
function mapProbeOwn(mapper: Mapper, v: Vpn): void {
  for (let i = 0; i < 8; i++)
    mapper.map(v(BigInt(i) * 0x200000n), i * 512, PAGE_2M, { write: true }).ignore();
  mapper.map(v(USER_RIP_VA), PROBE_USER_PAGE_PA / 4096, PAGE_4K, { user: true }).ignore();
  mapper.map(v(USER_STACK_VA), PROBE_USER_STACK_PA / 4096, PAGE_4K, { user: true, write: true }).ignore();
}

/** The test leaves: 4 KiB, 2 MiB and 1 GiB, one of each per protection, all leading to the RET pad. */
function mapTestLeaves(mapper: Mapper, v: Vpn, pad: number): Target[] {
  const targets: Target[] = [];
  PROTS.forEach((p, i) => {
    const i4k = 0xffff800000000000n + BigInt(i) * 0x1000n;
    const i2m = 0xffff800040000000n + BigInt(i) * 0x200000n;
    const i1g = 0xffff800080000000n + BigInt(i) * 0x40000000n;
    mapper.map(v(i4k), pad, PAGE_4K, p.prot).ignore();
    mapper.map(v(i2m), pad, PAGE_2M, p.prot).ignore();
    mapper.map(v(i1g), 0, PAGE_1G, p.prot).ignore();
    targets.push({ label: `4K ${p.name}`, va: i4k, shift: PAGE_4K });
    targets.push({ label: `2M ${p.name}`, va: i2m, shift: PAGE_2M });
    targets.push({ label: `1G ${p.name}`, va: i1g + BigInt(PROBE_PAD_PA), shift: PAGE_1G });
  });
  return targets;
}

/** The address of root-level slot n of the high half. */
function slot(n: number): bigint {
  return 0xffff800000000000n + BigInt(n) * (1n << 39n);
}

/**
 * Upper-level rights and reserved bits, one root-level slot each: each maps a leaf, then edits one
 * entry on its path (a read-only PDE, a supervisor PDPTE, XD or PS in a PML4E, bit 13 of a 2 MiB leaf,
 * address bit 51 of a PTE).
 */
function mapEditedSlots(machine: Machine, mapper: Mapper, levels: Levels, v: Vpn, pad: number): Special[] {
  const mem = machine.mem;
  const root = mapper.root;
  const lo = (pa: number) => mem.peek32(pa);
  const setLo = (pa: number, x: number) => mem.poke32(pa, x >>> 0);
  const special: Special[] = [];
  /** Map slot n's leaf, then return the PA of its path's entry at `level`. */
  const mapSlot = (n: number, shift: PageShift, prot: Prot, level: number): [bigint, number] => {
    const va = slot(n);
    mapper.map(v(va), pad, shift, prot).ignore();
    return [va, entryPa(machine, root, levels, va, level)];
  };
  {
    const [va, pde] = mapSlot(2, PAGE_4K, { user: true, write: true }, 2);
    setLo(pde, lo(pde) & ~Pte.RW);
    special.push({ label: "4K U-RW-X under a read-only PDE", va, shift: 0 });
  }
  {
    const [va, pdpte] = mapSlot(3, PAGE_4K, { user: true, write: true }, 3);
    setLo(pdpte, lo(pdpte) & ~Pte.US);
    special.push({ label: "4K U-RW-X under a supervisor PDPTE", va, shift: 0 });
  }
  {
    const [va, pml4e] = mapSlot(4, PAGE_4K, { write: true }, 4);
    mem.poke32(pml4e + 4, (mem.peek32(pml4e + 4) | 0x80000000) >>> 0);
    special.push({ label: "4K S-RW-X under a PML4E with XD", va, shift: 0 });
  }
  {
    const [va, pml4e] = mapSlot(5, PAGE_4K, { write: true }, 4);
    setLo(pml4e, lo(pml4e) | Pte.PS);
    special.push({ label: "4K S-RW-X under a PML4E with PS (reserved)", va, shift: 0 });
  }
  {
    const [va, pde] = mapSlot(6, PAGE_2M, { write: true }, 2);
    setLo(pde, lo(pde) | (1 << 13));
    special.push({ label: "2M S-RW-X with bit 13 set (reserved)", va, shift: 9 });
  }
  {
    const [va, pte] = mapSlot(7, PAGE_4K, { write: true }, 1);
    mem.poke32(pte + 4, (mem.peek32(pte + 4) | (1 << 19)) >>> 0); // address bit 51
    special.push({ label: "4K S-RW-X with address bit 51 (reserved)", va, shift: 0, reads: true });
  }
  return special;
}

/**
 * A recursive slot (supervisor, RW, NX): the root seen as a 4 KiB page at slot repeated at every
 * level. Accesses touch the root's own unused entry RECURSIVE_SCRATCH (a write stores 0xC3 there).
 * Returns the address that reaches it.
 */
function mapRecursiveSlot(machine: Machine, root: number, levels: Levels): bigint {
  const mem = machine.mem;
  const rootSlot = root * 4096 + RECURSIVE_SLOT * 8;
  mem.poke32(rootSlot + 4, 0x80000000);
  mem.poke32(rootSlot, ((root * 4096) | Pte.P | Pte.RW) >>> 0);
  let va = 0n;
  for (let i = 0; i < levels; i++) va = (va << 9n) | BigInt(RECURSIVE_SLOT);
  return vpnToVa(Number(va), levels, RECURSIVE_SCRATCH * 8);
}

/** Every test leaf x {read, write, fetch} x {CPL0, CPL3} x every control set. */
function addLeafCases(add: AddCase, targets: Target[]): void {
  for (const t of targets) {
    for (const kind of KINDS) {
      for (const cpl of [0, 3]) {
        for (const c of CONTROL_SETS) {
          add(
            `${t.label} ${kind} CPL${cpl} ${c.name}`,
            t.va,
            kind,
            c.ctl | (cpl === 3 ? Ctl.CPL3 : 0),
            t.shift,
          );
        }
      }
    }
  }
}

/** Every special slot x its kinds x {CPL0, CPL3} x {base, WP=0, NXE=0}. */
function addSpecialCases(add: AddCase, special: Special[]): void {
  for (const s of special) {
    for (const kind of s.reads ? (["read"] as ProbeKind[]) : KINDS) {
      for (const cpl of [0, 3]) {
        for (const c of CONTROL_SETS.slice(0, 3)) {
          add(
            `${s.label} ${kind} CPL${cpl} ${c.name}`,
            s.va,
            kind,
            c.ctl | (cpl === 3 ? Ctl.CPL3 : 0),
            s.shift,
          );
        }
      }
    }
  }
}

/** Locked RMWs on the 4 KiB S-RW, S-RO, U-RW and U-RO leaves and on a non-present PTE. */
function addLockCases(add: AddCase, targets: Target[]): void {
  const base = CONTROL_SETS[0].ctl;
  const lockTargets = [targets[0], targets[3], targets[9], targets[12]]; // 4K S-RW, S-RO, U-RW, U-RO
  for (const t of lockTargets) {
    for (const cpl of [0, 3])
      add(`${t.label} lock CPL${cpl} base`, t.va, "lock", base | (cpl === 3 ? Ctl.CPL3 : 0), 0);
  }
  for (const cpl of [0, 3]) {
    add(
      `not present PTE lock CPL${cpl} base`,
      0xffff800000000000n + 0x1ff000n,
      "lock",
      base | (cpl === 3 ? Ctl.CPL3 : 0),
      -1,
    );
  }
}

export function buildProbeSpace(levels: Levels): ProbeSpace {
  const machine = new Machine({ levels, maxPhysAddrBits: 46 });
  const mapper = new Mapper(machine.mem, new Frames(), {
    levels,
    maxPhysAddrBits: 46,
    counters: machine.counters,
  });
  const v = (va: bigint) => vaToVpn(va, levels).vpn;
  mapProbeOwn(mapper, v);
  const pad = PROBE_PAD_PA / 4096;
  const targets = mapTestLeaves(mapper, v, pad);
  const root = mapper.root;
  const special = mapEditedSlots(machine, mapper, levels, v, pad);
  special.push({
    label: "recursive slot: the root as a page",
    va: mapRecursiveSlot(machine, root, levels),
    shift: 0,
  });
  special.push({ label: "not present PTE", va: 0xffff800000000000n + 0x1ff000n, shift: -1 });
  special.push({ label: "not present PML4E", va: slot(8), shift: -1 });

  const cases: CaseSpec[] = [];
  const add: AddCase = (label, va, kind, ctl, shift) => {
    cases.push({ id: cases.length, label, va, kind, ctl, shift, path: walkPath(machine, root, levels, va) });
  };
  addLeafCases(add, targets);
  addSpecialCases(add, special);
  addLockCases(add, targets);
  return { machine, mapper, levels, cases };
}
