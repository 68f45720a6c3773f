import { spawnSync } from "node:child_process";
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { bootKernel, KMAP_NAMES } from "../../src/kernel/boot/index.ts";
import { getWorkload } from "../../src/lab/workloads/index.ts";
import { startKernel } from "../../src/kernel/kernel.ts";
import { getDesign } from "../../src/kernel/pmm/designs.ts";
import type { PmmDesign } from "../../src/kernel/pmm/interface.ts";
import { BYO_VALIDATION, validateDesign } from "../../src/kernel/pmm/validate.ts";
import { findClang, findRustc, includeDir } from "../../src/kernel/pmm/wasm/compile.ts";
import { loadWasmDesign } from "../../src/kernel/pmm/wasm/index.ts";
import { Rng } from "../../src/machine/rng.ts";
import { pagelab } from "../cli/run.ts";
import { itWithTool } from "../tools.ts";

const clang = findClang();
const needClang = itWithTool(
  clang === null
    ? "clang: not found (tried $PAGELAB_CLANG, clang, clang-19 .. clang-14; apt-get install -y clang lld)"
    : "",
);
const FIX = "test/fixtures/pmm/c";
const rustc = findRustc();
const needRust = itWithTool(
  rustc === null
    ? "rustc: none with the wasm32-unknown-unknown standard library (tried $PAGELAB_RUSTC, rustc, /usr/bin/rustc; apt-get install -y rustc libstd-rust-dev-wasm32)"
    : "",
);

/** The C design and its TypeScript twin, as the loader gives them (no worker: the unit under test). */
function pair(c: string, ts: string): [PmmDesign, PmmDesign] {
  return [loadWasmDesign(c, { isolate: false }), getDesign(ts)];
}

describe("allocators in C through WebAssembly", () => {
  needClang(
    "examples/c/stack_pages.c validates, and boots on qemu:4G under every strategy with the TypeScript stack-pages' counters",
    () => {
      const [c, ts] = pair("examples/c/stack_pages.c", "stack-pages");
      expect(validateDesign(c, { ...BYO_VALIDATION, runs: 10 }).ok).toBe(true);
      for (const kmap of KMAP_NAMES) {
        const rc = bootKernel({ map: "qemu:4G", pmm: c, kmap });
        const rt = bootKernel({ map: "qemu:4G", pmm: ts, kmap });
        expect(rc.checks.length, kmap).toBeGreaterThanOrEqual(5);
        expect(rc.counters, kmap).toEqual(rt.counters);
        expect(rc.freePagesAfterBoot).toBe(rt.freePagesAfterBoot);
        expect(rc.metadataBytes).toBe(rt.metadataBytes);
        // same allocation sequence, same frames
        const a = Array.from({ length: 600 }, () => rc.pmmAllocator.alloc(0));
        const b = Array.from({ length: 600 }, () => rt.pmmAllocator.alloc(0));
        expect(a).toEqual(b);
        expect(rc.pmmAllocator.alloc(0, { maxAddr: 16 * 2 ** 20 })).toBe(
          rt.pmmAllocator.alloc(0, { maxAddr: 16 * 2 ** 20 }),
        );
      }
    },
    180_000,
  );

  needClang(
    "on a workload (page-churn, quickmap) the C stack pages make exactly the TypeScript design's accesses",
    () => {
      const [c, ts] = pair("examples/c/stack_pages.c", "stack-pages");
      const run = (pmm: PmmDesign) => {
        const k = startKernel({ map: "qemu:256M", pmm, kmap: "quickmap", check: false });
        const before = k.counters.snapshot();
        getWorkload("page-churn").run(k, new Rng(1), { ops: 2000 }, () => {});
        const after = k.counters.snapshot();
        return Object.fromEntries(Object.keys(after).map((key) => [key, after[key] - (before[key] ?? 0)]));
      };
      const rc = run(c);
      expect(rc.memReads).toBeGreaterThan(1000);
      expect(rc).toEqual(run(ts));
    },
    60_000,
  );

  needClang(
    "examples/c/bitmap.c validates, and boots on qemu:4G under every strategy with the TypeScript bitmap's counters",
    () => {
      const [c, ts] = pair("examples/c/bitmap.c", "bitmap");
      expect(c.name).toBe("bitmap.c");
      expect(validateDesign(c, { ...BYO_VALIDATION, runs: 10 }).ok).toBe(true);
      const orders = [0, 1, 3, 5, 6, 9, 10, 11, 14, 18, 0, 2];
      for (const kmap of KMAP_NAMES) {
        const rc = bootKernel({ map: "qemu:4G", pmm: c, kmap });
        const rt = bootKernel({ map: "qemu:4G", pmm: ts, kmap });
        expect(rc.checks.length, kmap).toBeGreaterThanOrEqual(5);
        expect(rc.counters.memReads, kmap).toBeGreaterThan(1000);
        expect(rc.counters, kmap).toEqual(rt.counters);
        expect(rc.freePagesAfterBoot).toBe(rt.freePagesAfterBoot);
        expect(rc.metadataBytes).toBe(rt.metadataBytes);
        // same allocation sequence, every search path (orders 0-5, 6-10, 11-18, an address limit), same frames
        const seq = (a: typeof rc.pmmAllocator) => {
          const got = Array.from({ length: 300 }, () => a.alloc(0));
          for (const o of orders) got.push(a.alloc(o));
          got.push(a.alloc(0, { maxAddr: 16 * 2 ** 20 }), a.alloc(3, { maxAddr: 16 * 2 ** 20, colour: 5 }));
          for (let i = 0; i < orders.length; i++) if (got[300 + i] >= 0) a.free(got[300 + i], orders[i]);
          a.check();
          return got;
        };
        const a = seq(rc.pmmAllocator);
        expect(a.filter((p) => p >= 0).length, kmap).toBeGreaterThan(300 + orders.length);
        expect(a, kmap).toEqual(seq(rt.pmmAllocator));
        expect(rc.machine.counters.snapshot(), kmap).toEqual(rt.machine.counters.snapshot());
      }
    },
    180_000,
  );

  needClang(
    "on a workload (page-churn, quickmap) the C bitmap makes exactly the TypeScript design's accesses, bad frees included",
    () => {
      const [c, ts] = pair("examples/c/bitmap.c", "bitmap");
      const run = (pmm: PmmDesign) => {
        const k = startKernel({ map: "qemu:256M", pmm, kmap: "quickmap", check: false });
        const before = k.counters.snapshot();
        getWorkload("page-churn").run(k, new Rng(1), { ops: 3000 }, () => {});
        const p = k.pmm.alloc(2);
        const codes: string[] = [];
        for (const [pfn, order] of [
          [p, 1], // order too small (the block is larger)
          [p, 3], // order too large (the block is smaller)
          [p + 1, 0], // inside the block
          [p + 1, 1], // misaligned
          [0, 0], // reserved (never managed)
          [p, 2], // the right free
          [p, 2], // then a double free
        ]) {
          try {
            k.pmm.free(pfn, order);
            codes.push("ok");
          } catch (e) {
            codes.push((e as { code: string }).code);
          }
        }
        k.pmm.check();
        const after = k.counters.snapshot();
        const delta = Object.fromEntries(
          Object.keys(after).map((key) => [key, after[key] - (before[key] ?? 0)]),
        );
        return { delta, codes, p, stats: k.pmm.stats() };
      };
      const rc = run(c);
      expect(rc.delta.memReads).toBeGreaterThan(10_000);
      expect(rc.codes).toEqual([
        "WRONG_ORDER",
        "WRONG_ORDER",
        "BAD_FREE",
        "MISALIGNED_FREE",
        "BAD_FREE",
        "ok",
        "DOUBLE_FREE",
      ]);
      expect(rc).toEqual(run(ts));
    },
    60_000,
  );

  needRust(
    "examples/rust/stack_pages.rs (no_std, the same ABI) validates and boots with the TypeScript design's counters",
    () => {
      const [r, ts] = pair("examples/rust/stack_pages.rs", "stack-pages");
      expect(r.name).toBe("stack_pages.rs");
      expect(validateDesign(r, { ...BYO_VALIDATION, runs: 10 }).ok).toBe(true);
      for (const kmap of ["direct", "quickmap"] as const) {
        const a = bootKernel({ map: "qemu:256M", pmm: r, kmap });
        const b = bootKernel({ map: "qemu:256M", pmm: ts, kmap });
        expect(a.counters, kmap).toEqual(b.counters);
      }
    },
    60_000,
  );

  needClang("the same source compiles for a freestanding x86-64 kernel without a warning", () => {
    const dir = mkdtempSync(join(tmpdir(), "pagelab-c-"));
    for (const src of ["examples/c/stack_pages.c", "examples/c/bitmap.c"]) {
      const out = join(dir, `${basename(src)}.o`);
      const r = spawnSync(
        clang ?? "clang",
        [
          "--target=x86_64-unknown-none",
          "-ffreestanding",
          "-mno-red-zone",
          "-std=c11",
          "-Wall",
          "-Wextra",
          "-Werror",
          `-I${includeDir()}`,
          "-c",
          src,
          "-o",
          out,
        ],
        { encoding: "utf8" },
      );
      expect(r.status, `${src}: ${r.stderr}`).toBe(0);
      expect(r.stderr, src).toBe("");
      expect(statSync(out).size, src).toBeGreaterThan(0);
    }
  });

  needClang(
    "a module missing exports, with a wrong signature or an import outside the ABI is refused, naming each (exit 2)",
    () => {
      const r = pagelab("boot", "--pmm", `${FIX}/bad-abi.c`, "--map", "qemu:256M");
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/missing export pagelab_alloc \(wraps pmm_alloc\)/);
      expect(r.stderr).toMatch(
        /export pagelab_free has signature \(i32\) -> i32, expected \(f64, i32\) -> i32/,
      );
      expect(r.stderr).toMatch(/imports function env\.malloc, outside the ABI/);
    },
  );

  needClang(
    "a frame table in a C array (linear memory above 64 KiB) is refused with the reason (exit 2)",
    () => {
      const r = pagelab("boot", "--pmm", `${FIX}/frame-table.c`, "--map", "qemu:256M");
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/linear memory of \d+ KiB exceeds the 64 KiB cap/);
      expect(r.stderr).toMatch(/must live in simulated RAM/);
    },
  );

  needClang("a trap names the exported function and the shrunk sequence before it (exit 3)", () => {
    const r = pagelab("boot", "--pmm", `${FIX}/trap.c`, "--map", "qemu:256M");
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/pmm_alloc\(0\) trapped: unreachable/);
    const steps = r.stderr.split("\n").filter((l) => /^ {2}(alloc|free)\(/.test(l));
    expect(steps).toHaveLength(2); // shrunk: the third allocation traps
  });

  needClang("a loop that touches memory is stopped by the access budget, naming the call (exit 3)", () => {
    const r = pagelab("boot", "--pmm", `${FIX}/walk-forever.c`, "--map", "qemu:256M");
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/pmm_alloc\(0\) made more than 4194304 metadata accesses in one call/);
  });

  needClang(
    "a loop that never touches memory is stopped by the wall clock of the validation worker (exit 3)",
    () => {
      const r = spawnSync(
        process.execPath,
        ["bin/pagelab.mjs", "boot", "--pmm", `${FIX}/spin.c`, "--map", "qemu:256M"],
        {
          encoding: "utf8",
          env: { ...process.env, NO_COLOR: "1", PAGELAB_WASM_CALL_MS: "1500" },
        },
      );
      expect(r.status).toBe(3);
      expect(r.stderr).toMatch(/pmm_alloc\(\d+[^)]*\) did not return within 1\.5 s \(wall clock\)/);
      expect(r.stderr).toMatch(/\[never returned\]/);
    },
  );

  needClang("a frame handed out twice is caught by the same validator as TypeScript designs (exit 3)", () => {
    const r = pagelab("boot", "--pmm", `${FIX}/twice.c`, "--map", "qemu:256M");
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(
      /violates an invariant \(seed \d+\): .*(lost, or on the stack twice|differ from managed|overlaps)/,
    );
    expect(r.stderr).toMatch(/^ {2}free\(0x[0-9a-f]+, 0\)/m);
  });

  needClang(
    "pagelab new-pmm c writes a starting point that compiles and validates unchanged; include-path finds pmm.h",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "pagelab-new-"));
      const file = join(dir, "my_pmm.c");
      const r = pagelab("new-pmm", "c", file);
      expect(r.status, r.stderr).toBe(0);
      const d = loadWasmDesign(file, { isolate: false });
      expect(d.name).toBe("my_pmm.c");
      expect(validateDesign(d, { ...BYO_VALIDATION, runs: 5 }).ok).toBe(true);
      expect(pagelab("new-pmm", "c", file).status).toBe(2); // exists: refused without --force
      expect(pagelab("include-path").stdout.trim()).toBe(includeDir());
    },
  );

  it("without clang the message names the packages and the command to build the .wasm by hand (exit 2)", () => {
    const r = spawnSync(process.execPath, ["bin/pagelab.mjs", "boot", "--pmm", "examples/c/stack_pages.c"], {
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1", PATH: "/nonexistent", PAGELAB_CLANG: "" },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/apt-get install clang lld/);
    expect(r.stderr).toMatch(/clang --target=wasm32 .*-o stack_pages\.wasm/);
  });
});
