import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { loadDesign } from "../../src/kernel/pmm/load.ts";
import { pagelab } from "../cli/run.ts";

describe("bring your own allocator", () => {
  it("the README's first-fit example is validated, then boots with every check passing", () => {
    const r = pagelab(
      "boot",
      "--pmm",
      "./examples/first-fit.ts",
      "--map",
      "qemu:256M",
      "--kmap",
      "recursive",
      "--json",
    );
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.pmm).toBe("first-fit");
    expect(j.checks.length).toBeGreaterThanOrEqual(5);
    expect(j.metadataBytes).toBe(2 * Math.ceil(j.usablePages / 32) * 4);
  });

  it("a broken allocator is refused with the first violated invariant and a shrunk sequence", () => {
    const r = pagelab("boot", "--pmm", "./test/fixtures/pmm/twice-stack.ts", "--map", "qemu:256M");
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(
      /twice-stack violates an invariant \(seed \d+\): .*(overlaps|not held|managed|free)/,
    );
    const steps = r.stderr.split("\n").filter((l) => /^ {2}(alloc|free)\(/.test(l));
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.length).toBeLessThanOrEqual(6); // shrunk to the essence: free once, allocate twice
    const json = JSON.parse(pagelab("boot", "--pmm", "./test/fixtures/pmm/twice-stack.ts", "--json").stdout);
    expect(json.error).toBe("PMM_VALIDATION");
  });

  it("bad modules get clear errors", async () => {
    await expect(loadDesign("./test/fixtures/pmm/not-a-design.ts")).rejects.toThrow(
      /must be a PmmDesign \(missing: summary, metadataBytes, create\)/,
    );
    await expect(loadDesign("./nope/missing.ts")).rejects.toThrow(PagelabError);
    await expect(loadDesign("buddyy")).rejects.toThrow(/no PMM design 'buddyy'/);
    expect((await loadDesign("bitmap")).name).toBe("bitmap");
  });
});
