/**
 * Page-table trees the conformance tests hand to QEMU, built with pagelab's own Mapper: every leaf size,
 * the attribute bits QEMU prints (NX G PS D A PCD PWT US RW, PAT), a recursive slot, an upper-level
 * restriction, and a 1 GiB leaf beyond RAM (translation only).
 */
import { Machine } from "../../src/machine/machine.ts";
import { Mapper } from "../../src/machine/x86/mapper.ts";
import { Access } from "../../src/machine/x86/mmu.ts";
import { hiWithPfn, loWithPfn, PAGE_1G, PAGE_2M, PAGE_4K, Pte } from "../../src/machine/x86/pte.ts";
import { type Levels, tableIndex, vaToVpn } from "../../src/machine/x86/vaddr.ts";
import { TestFrames } from "../machine/helpers.ts";

/** The recursive slot used in the trees (root-table index). */
export const RECURSIVE_SLOT = 510;

export function handTree(levels: Levels) {
  const m = new Machine({ levels, maxPhysAddrBits: 46 });
  const frames = new TestFrames(0x100, 256); // tables at 1 MiB..2 MiB
  const mapper = new Mapper(m.mem, frames, { levels, maxPhysAddrBits: 46, counters: m.counters });
  const v = (va: bigint) => vaToVpn(va, levels).vpn;
  mapper.map(v(0x400000n), 0x60, PAGE_4K, { user: true, write: true, nx: true }).ignore();
  mapper.map(v(0x401000n), 0x61, PAGE_4K, { user: true }).ignore();
  mapper.map(v(0xffff888000000000n), 0, PAGE_1G, { write: true, nx: true, global: true }).ignore();
  mapper.map(v(0xffff888040000000n), 0x200, PAGE_2M, { write: true, pcd: true, pwt: true }).ignore();
  mapper.map(v(0xffff888040200000n), 0x400, PAGE_2M, { user: true, pat: true }).ignore();
  mapper.map(v(0xffff888080000000n), 0x4000000, PAGE_1G, { write: true }).ignore(); // 256 GiB: beyond RAM
  mapper.map(v(0xffffffff80000000n), 0x1000, PAGE_4K, { global: true }).ignore();
  mapper.map(v(0xffffffff80001000n), 0x1001, PAGE_4K, { pat: true, pcd: true, write: true }).ignore();
  // An upper-level restriction: the PML4E of 0x7f0000000000 is made read-only; the leaf stays RW.
  mapper.map(v(0x7f0000000000n), 0x70, PAGE_4K, { user: true, write: true }).ignore();
  let table = mapper.root;
  for (let level: number = levels; level > 4; level--) {
    const pa = table * 4096 + tableIndex(v(0x7f0000000000n), level) * 8;
    table = m.mem.peek32(pa) >>> 12;
  }
  const pml4e = table * 4096 + tableIndex(v(0x7f0000000000n), 4) * 8;
  m.mem.write32(pml4e, m.mem.read32(pml4e) & ~Pte.RW);
  // A recursive slot: root[510] points at the root (supervisor, RW, NX).
  const slot = mapper.root * 4096 + RECURSIVE_SLOT * 8;
  m.mem.write32(slot + 4, hiWithPfn(mapper.root, 0x80000000));
  m.mem.write32(slot, loWithPfn(mapper.root, Pte.P | Pte.RW));
  // Accessed/Dirty through the MMU.
  const cpu = m.cpu0;
  cpu.writeCr3(mapper.root);
  cpu.translate(v(0x400000n), Access.WRITE | Access.USER);
  cpu.translate(v(0xffff888040000000n), Access.READ);
  cpu.translate(v(0xffffffff80000000n), Access.FETCH);
  return { m, mapper, frames };
}

/** The address of the root table itself through the recursive slot (slot repeated at every level). */
export function recursiveRootVa(levels: Levels): bigint {
  let va = 0n;
  for (let i = 0; i < levels; i++) va = (va << 9n) | BigInt(RECURSIVE_SLOT);
  va <<= 12n;
  const bits = levels === 5 ? 57n : 48n;
  if ((va >> (bits - 1n)) & 1n) va |= ((1n << 64n) - 1n) ^ ((1n << bits) - 1n);
  return va;
}

export const HAND_SAMPLES = [
  0x400000n,
  0x400abcn,
  0x401fffn,
  0x402000n,
  0xffff888000000000n,
  0xffff88803ffff008n,
  0xffff888040012345n,
  0xffff888040200000n,
  0xffff8880403fffffn,
  0xffff888080000000n,
  0xffff8880bfffffffn,
  0xffffffff80000000n,
  0xffffffff80001234n,
  0xffffffff80002000n,
  0x7f0000000000n,
  0xffff800000000000n,
];
