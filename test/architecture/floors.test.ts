/**
 * The floor check: no module under src/ imports from a floor above its own (floors.ts). It fails the
 * suite on the first upward import, naming the file, the specifier and the two floors.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { floorOf, floorViolations, importsOf, sourceFiles } from "./floors.ts";

const SRC = fileURLToPath(new URL("../../src", import.meta.url));

describe("floors", () => {
  it("no module under src/ imports from a floor above its own", () => {
    const files = sourceFiles(SRC);
    expect(files.size).toBeGreaterThan(100);
    const bad = floorViolations(files).map((v) => `${v.file} (${v.from}) imports ${v.imports} (${v.to})`);
    expect(bad).toEqual([]);
  });

  it("every module under src/ is on a floor", () => {
    const lost = [...sourceFiles(SRC).keys()].filter((f) => floorOf(f) === null);
    expect(lost).toEqual([]);
  });

  it("catches an upward import, static, re-exported or dynamic", () => {
    const files = new Map([
      ["kernel/pmm/x.ts", 'import { bootKernel } from "../../lab/compare.ts";\n'],
      ["machine/y.ts", 'export { z } from "../kernel/z.ts";\n'],
      ["firmware/w.ts", 'const m = await import("../cli/main.ts");\n'],
      [
        "kernel/ok.ts",
        'import { fail } from "../errors.ts";\nimport type { Machine } from "../machine/machine.ts";\n',
      ],
      ["machine/side.ts", 'import { loadMap } from "../firmware/load.ts";\n'],
    ]);
    expect(floorViolations(files).map((v) => `${v.file}>${v.to}`)).toEqual([
      "kernel/pmm/x.ts>lab",
      "machine/y.ts>kernel",
      "firmware/w.ts>cli",
      "machine/side.ts>firmware",
    ]);
  });

  it("reads multi-line imports and ignores packages", () => {
    const src =
      'import {\n  a,\n  b,\n} from "../lab/a.ts";\nimport { c } from "node:fs";\nimport "./side-effect.ts";\n';
    expect(importsOf(src)).toEqual(["../lab/a.ts", "./side-effect.ts"]);
  });
});

describe("runtime dependencies", () => {
  it("every package src/ imports is a dependency, so `npm ci --omit=dev && npx pagelab boot` works", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    const deps = new Set(Object.keys(pkg.dependencies));
    // Loaded only to build the explorer page from source (`serve` on a checkout without web/dist).
    const buildOnly = new Set(["vite"]);
    const missing: string[] = [];
    for (const [file, text] of sourceFiles(SRC)) {
      for (const spec of importsOf(text, true)) {
        if (spec.startsWith(".") || spec.startsWith("node:")) continue;
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0];
        if (name === "pagelab" || buildOnly.has(name)) continue;
        if (!deps.has(name)) missing.push(`${file} imports ${spec}`);
      }
    }
    expect(missing).toEqual([]);
    expect(deps.has("fast-check")).toBe(true); // validates a --pmm file before booting it
  });
});
