/**
 * Page tables reached through a recursive slot: root entry `r` points to the root itself, so the
 * table of level L on the path of virtual page V appears as an ordinary page at
 *
 *   VPN(L, V) = r·512^(N-1) + r·512^(N-2) + ... (L terms) + floor(V / 512^L)
 *
 * (N = paging levels). The root is the page with all N indices equal to r. The kernel never needs a
 * table's physical address to edit it, which is the whole point; the costs are the TLB entries these
 * pages take and an INVLPG of a table's recursive address whenever a table is linked in or freed
 * (otherwise the TLB could still map the old frame there: the stale-TLB checker catches that).
 *
 * Slot 511 works for the hardware but is unsound for address arithmetic near the top of the address
 * space (it overlaps the kernel image slot), which is why 510 is the default.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Current } from "../percpu.ts";
import type { TableAccess } from "../../machine/x86/mapper.ts";
import { Access } from "../../machine/x86/mmu.ts";
import { LEVEL_SPAN, tableIndex } from "../../machine/x86/vaddr.ts";

export class RecursiveTableAccess implements TableAccess {
  /** prefix[L]: the VPN contributed by L recursive indices at the top. */
  private readonly prefix: number[];

  constructor(
    readonly cur: Current,
    readonly slot: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    if (!Number.isInteger(slot) || slot < 0 || slot > 511)
      fail("BAD_OPTION", `recursive slot ${slot} is not 0..511`);
    const n = cur.cpu.levels;
    this.prefix = [0];
    for (let l = 1; l <= n; l++) this.prefix.push(this.prefix[l - 1] + slot * LEVEL_SPAN[n - l + 1]);
  }

  read(_table: number, level: number, vpn: number, word: number): number {
    return this.cur.cpu.load32(this.pageOf(level, vpn), tableIndex(vpn, level) * 8 + word);
  }

  write(_table: number, level: number, vpn: number, word: number, value: number): void {
    this.cur.cpu.store32(this.pageOf(level, vpn), tableIndex(vpn, level) * 8 + word, value);
  }

  readIndex(_table: number, level: number, vpn: number, i: number): number {
    return this.cur.cpu.load32(this.pageOf(level, vpn), i * 8);
  }

  prepare(): void {
    // Not reachable yet: the table is zeroed through its recursive address once linked.
  }

  linked(table: number, level: number, vpn: number): void {
    const page = this.pageOf(level, vpn);
    this.cur.cpu.invlpg(page);
    const pfn = this.cur.cpu.translate(page, Access.WRITE);
    if (pfn !== table) {
      fail(
        "KERNEL_OOPS",
        `recursive slot: the new table ${hex(table)} appears as frame ${hex(pfn)} (#PF ${hex(this.cur.cpu.faultCode)})`,
      );
    }
    this.cur.cpu.mem.zeroFrame(table);
  }

  unlinked(_table: number, level: number, vpn: number): void {
    this.cur.cpu.invlpg(this.pageOf(level, vpn));
  }

  /** VPN of the page through which the table of `level` on the path of `vpn` is seen. */
  pageOf(level: number, vpn: number): number {
    return this.prefix[level] + Math.floor(vpn / (LEVEL_SPAN[level] * 512));
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(RecursiveTableAccess);
