import { describe, expect, it } from "vitest";
import { pagelab } from "./run.ts";

describe("pagelab demo / pt (CLI)", () => {
  it("demo --json reports steps, page-table pages and counters", () => {
    const r = pagelab("demo", "--json");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.map).toBe("qemu:4G");
    expect(j.steps.length).toBe(7);
    // The tour runs on the kernel `pagelab boot` brings up: its tables, plus the user half's.
    const boot = JSON.parse(pagelab("boot", "--json").stdout);
    expect(j.steps[0].counters).toEqual(
      Object.fromEntries(Object.entries(boot.counters).filter(([, v]) => v !== 0)),
    );
    expect(j.steps[1].counters.ptPages).toBe(4);
    // ... less the user table the last step's unmap freed.
    expect(j.steps[6].counters.ptPagesFreed).toBe(1);
    expect(j.pageTablePages).toBe(boot.pageTablePages + 4 - 1);
    expect(j.counters.tlbL1Hits).toBeGreaterThanOrEqual(1000);
    expect(j.counters.staleTlbHits).toBe(0);
  });

  it("demo is deterministic: same inputs, same counters", () => {
    const a = JSON.parse(pagelab("demo", "--json", "--levels", "5").stdout);
    const b = JSON.parse(pagelab("demo", "--json", "--levels", "5").stdout);
    expect(a.counters).toEqual(b.counters);
    expect(a.levels).toBe(5);
  });

  it("pt translate and pt dump walk the booted kernel of the boot options (#12)", () => {
    // No direct map under recursive: the direct-map address faults; the recursive slot maps the root.
    const r = JSON.parse(
      pagelab("pt", "translate", "0xffff888000001000", "--kmap", "recursive", "--levels", "5", "--json")
        .stdout,
    );
    expect(r.levels).toBe(5);
    expect(r.pa).toBeNull();
    expect(r.fault.bits).toContain("not present");
    const boot = JSON.parse(pagelab("boot", "--kmap", "recursive", "--levels", "5", "--json").stdout);
    const d = JSON.parse(pagelab("pt", "dump", "--kmap", "recursive", "--levels", "5", "--json").stdout);
    expect(d.pageTablePages).toBe(boot.pageTablePages);
    expect(d.levels).toBe(5);
    expect(r.cr3).toBe(d.cr3);
    // The default boot has a direct map: the same address is RAM.
    expect(JSON.parse(pagelab("pt", "translate", "0xffff888000001000", "--json").stdout).pa).toBe("0x1000");
  });

  it("pt translate walks a direct-map address to a 1 GiB page", () => {
    const r = pagelab("pt", "translate", "0xffff888040001234", "--json");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.pa).toBe("0x40001234");
    expect(j.pageSize).toBe("1G");
    expect(j.steps.map((s: { entry: string }) => s.entry)).toEqual(["PML4E", "PDPTE"]);
    expect(j.steps[0].index).toBe(273);
    expect(j.steps[1].decoded).toMatchObject({
      present: true,
      writable: true,
      ps: true,
      global: true,
      nx: true,
    });
  });

  it("pt translate reports a user-mode fault on kernel data with error code P|U", () => {
    const j = JSON.parse(pagelab("pt", "translate", "0xffffffff80100000", "--user", "--json").stdout);
    expect(j.pa).toBeNull();
    expect(j.fault.errorCode).toBe(5);
    expect(j.fault.cr2).toBe("0xffffffff80100000");
  });

  it("pt translate rejects a non-canonical address with a clear error and exit 2", () => {
    const r = pagelab("pt", "translate", "0x0000800000000000");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/NON_CANONICAL.*not canonical for 4-level paging/);
  });

  it("pt dump prints ptdump, info tlb and info mem formats, and JSON leaves", () => {
    const d = pagelab("pt", "dump");
    expect(d.stdout).toMatch(/^---\[ User Space \]---$/m);
    expect(d.stdout).toMatch(/^0xffff888040000000-0xffff888080000000 +1G +RW +PSE +GLB NX pud$/m);
    const t = pagelab("pt", "dump", "--format", "tlb");
    expect(t.stdout).toMatch(/^ffff888040000000: 0000000040000000 XGP-----W$/m);
    const m = pagelab("pt", "dump", "--format", "mem");
    // The booted kernel's image: .text and .rodata read-only, .data and .bss writable.
    expect(m.stdout).toMatch(/^ffffffff80000000-ffffffff80140000 0000000000140000 -r-$/m);
    expect(m.stdout).toMatch(/^ffffffff80140000-ffffffff80200000 00000000000c0000 -rw$/m);
    const j = JSON.parse(pagelab("pt", "dump", "--json").stdout);
    expect(j.leaves.length).toBe(t.stdout.trim().split("\n").length);
  });
});
