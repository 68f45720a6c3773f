/**
 * Counters are the product's measure: the boots and compare runs in golden.ts must cost exactly what
 * counters.json records. A difference is listed by key and figure; if it is intended, regenerate with
 * `npm run golden` and explain each change in the commit.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type Figures, makeGolden } from "./golden.ts";

describe("golden counters", () => {
  it("the default boot, the boot matrix and the default compare cost what counters.json records", async () => {
    const want = JSON.parse(readFileSync(new URL("./counters.json", import.meta.url), "utf8")) as Record<
      string,
      Figures
    >;
    const got = await makeGolden(2);
    const diffs: string[] = [];
    for (const key of new Set([...Object.keys(want), ...Object.keys(got)])) {
      const a = want[key];
      const b = got[key];
      if (a === undefined || b === undefined) {
        diffs.push(`${key}: ${a === undefined ? "new" : "gone"}`);
        continue;
      }
      for (const f of new Set([...Object.keys(a), ...Object.keys(b)]))
        if (a[f] !== b[f]) diffs.push(`${key} ${f}: ${a[f]} -> ${b[f]}`);
    }
    expect(diffs.slice(0, 60), `${diffs.length} differences`).toEqual([]);
    expect(Object.keys(got).length).toBeGreaterThan(300);
  }, 300_000);
});
