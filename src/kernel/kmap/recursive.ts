/**
 * `recursive`: one root-table slot (510 by default, any slot works for the hardware) points to the root
 * itself, so every page table is visible as a page in a 512 GiB (4-level) window and the kernel edits
 * tables by virtual address, never needing to map them (see recursive-access.ts). Free frames, which
 * the recursive window does not show, are reached through a temporary window; the PMM metadata through
 * its own mapping.
 *
 * Slot 511 is refused here: it holds the kernel image (-2 GiB), and recursive address arithmetic there
 * overflows the top of the address space. Slots used by the kernel's other regions are refused too.
 */
import { cloneable } from "../../machine/clone.ts";
import { fail } from "../../errors.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import type { FrameSource, TableAccess } from "../../machine/x86/mapper.ts";
import { hiWithPfn, loWithPfn, Pte, PteHi } from "../../machine/x86/pte.ts";
import { formatVa, LEVEL_SPAN, tableIndex } from "../../machine/x86/vaddr.ts";
import { LinearPort, RoutedPort } from "./ports.ts";
import { RecursiveTableAccess } from "./recursive-access.ts";
import { type Finalized, type KmapContext, type KmapName, KmapStrategy } from "./strategy.ts";

export class RecursiveStrategy extends KmapStrategy {
  readonly name: KmapName = "recursive";
  readonly summary = "a root slot points to the root: page tables edited through it; windows for free frames";
  override readonly ownOptions = ["recursiveSlot"] as const;
  private access: RecursiveTableAccess | null = null;

  override recursiveSlots(): number[] {
    return [this.ctx.layout.recursiveSlot];
  }

  private port: PhysPort | null = null;

  protected bootAccess(): TableAccess {
    this.access ??= new RecursiveTableAccess(this.ctx.cur, this.ctx.layout.recursiveSlot);
    return this.access;
  }

  private checkSlot(ctx: KmapContext): number {
    const slot = ctx.layout.recursiveSlot;
    const top = ctx.layout.levels;
    const used: [string, number][] = [
      ["kernel image and fixmap", ctx.layout.kernelImage],
      ["PMM metadata", ctx.layout.metadata],
      ["PMM growable regions", ctx.layout.regions],
      ["vmalloc", ctx.layout.vmalloc],
    ];
    for (const [what, vpn] of used) {
      if (tableIndex(vpn, top) === slot)
        fail("BAD_OPTION", `recursive slot ${slot} is taken by the ${what} region`);
    }
    if (slot < 256)
      ctx.log(
        `note: recursive slot ${slot} is in the user half: every process would need it too, and user mode must not reach it (US=0)`,
      );
    return slot;
  }

  override prepare(ctx: KmapContext): void {
    this.ctx = ctx;
    const slot = this.checkSlot(ctx);
    // Install the slot in the boot root (in .bss): P | RW, no-execute, supervisor only.
    const pa = ctx.bootRoot * 4096 + slot * 8;
    ctx.imagePort.write32(pa + 4, hiWithPfn(ctx.bootRoot, PteHi.XD));
    ctx.imagePort.write32(pa, loWithPfn(ctx.bootRoot, Pte.P | Pte.RW));
    super.prepare(ctx);
    ctx.log(
      `recursive slot ${slot} installed in the boot root: page tables now appear at ${formatVa(slot * LEVEL_SPAN[ctx.layout.levels], ctx.layout.levels)}; ` +
        "new tables come from memblock and are zeroed through the slot once linked (no mapping needed)",
    );
  }

  pmmPort(metaPa: number, bytes: number): PhysPort {
    if (this.port === null) {
      const meta = new LinearPort(this.ctx.cur, this.ctx.layout.metadata, metaPa, bytes, "PMM metadata");
      this.port = new RoutedPort(bytes > 0 ? [meta] : [], this.window(0));
    }
    return this.port;
  }

  finalize(frames: FrameSource, metaPa: number, metaBytes: number): Finalized {
    const w = this.window(1);
    const root = this.newRootWithKernelHalf(frames, w);
    const slot = this.ctx.layout.recursiveSlot;
    w.write32(root * 4096 + slot * 8 + 4, hiWithPfn(root, PteHi.XD));
    w.write32(root * 4096 + slot * 8, loWithPfn(root, Pte.P | Pte.RW));
    this.ctx.cur.cpu.writeCr3(root);
    this.ctx.log(`final root's slot ${slot} points to itself; CR3 switched`);
    return { root, access: this.bootAccess(), port: this.pmmPort(metaPa, metaBytes) };
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(RecursiveStrategy);
