/**
 * Host budgets come from the design's traits (#12): a design says what it backs beyond its metadata
 * (`hostBytes`), so the -unchecked variants and a bring-your-own design are estimated like built-ins.
 */
import { describe, expect, it } from "vitest";
import { bootKernel, checkHostBudget, hostBytesEstimate } from "../../../src/kernel/boot/index.ts";
import { makeStrategy, STRATEGIES } from "../../../src/kernel/kmap/strategies.ts";
import { getDesign } from "../../../src/kernel/pmm/designs.ts";
import type { PmmDesign } from "../../../src/kernel/pmm/interface.ts";
import { stackDesign } from "../../../src/kernel/pmm/stack.ts";

const GiB = 2 ** 30;
const layout = (gib: number) => ({ usable: [{ start: 256, end: 256 + (gib * GiB) / 4096 }] });

describe("host budget by traits", () => {
  it("an -unchecked stack backs 8 bytes a frame like the checked one, less the allocation map", () => {
    const l = layout(64);
    const checked = hostBytesEstimate(stackDesign(), l);
    const unchecked = hostBytesEstimate(stackDesign({ checked: false }), l);
    expect(unchecked.bytes).toBe(((64 * GiB) / 4096) * 8);
    expect(checked.bytes - unchecked.bytes).toBe(getDesign("stack").metadataBytes(l));
    expect(unchecked.why).toMatch(/8 bytes per free frame/);
    expect(() => checkHostBudget(stackDesign({ checked: false }), l, 64 * 2 ** 20)).toThrow(
      /HOST_MEMORY|host memory/,
    );
  });

  it("a design of one's own is refused by what it says it backs", () => {
    const base = getDesign("bitmap");
    const greedy: PmmDesign = {
      ...base,
      name: "greedy",
      hostBytes: (l) => ({
        bytes: l.usable.reduce((s, r) => s + r.end - r.start, 0) * 4096,
        why: "it copies RAM",
      }),
    };
    expect(() => bootKernel({ map: "qemu:256M", pmm: greedy, hostBudget: 128 * 2 ** 20 })).toThrow(
      /greedy PMM .* would back about .* \(it copies RAM\)/,
    );
    expect(bootKernel({ map: "qemu:256M", pmm: greedy, hostBudget: 512 * 2 ** 20 }).pmm).toBe("greedy");
  });

  it("strategies answer by traits: direct map, own options, pool, recursive slots", () => {
    const traits = Object.keys(STRATEGIES).map((n) => {
      const s = makeStrategy(n);
      return [n, s.hasDirectMap, [...s.ownOptions], s.kernelPool];
    });
    expect(traits).toEqual([
      ["direct", true, [], false],
      ["recursive", false, ["recursiveSlot"], false],
      ["quickmap", false, [], false],
      ["hybrid", true, ["hybridLimit"], false],
      ["pool", false, [], true],
    ]);
    expect(bootKernel({ map: "qemu:256M", kmap: "recursive", recursiveSlot: 300 }).recursiveSlots).toEqual([
      300,
    ]);
    expect(() => makeStrategy("toString")).toThrow(/no kernel-mapping strategy 'toString'/);
    expect(() => getDesign("constructor")).toThrow(/no PMM design 'constructor'/);
  });
});
