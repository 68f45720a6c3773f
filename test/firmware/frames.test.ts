/** The frame-range helpers every floor above uses: counts and unions of [start, end) ranges. */
import { describe, expect, it } from "vitest";
import { framesIn, mergeRanges, usableFrameRanges, usablePages } from "../../src/firmware/frames.ts";
import { getPreset } from "../../src/firmware/presets.ts";

describe("frame ranges", () => {
  it("counts frames, and usablePages is the count of usableFrameRanges", () => {
    expect(framesIn([])).toBe(0);
    expect(
      framesIn([
        { start: 1, end: 4 },
        { start: 10, end: 11, node: 1 },
      ]),
    ).toBe(4);
    const map = getPreset("qemu:4G");
    expect(usablePages(map)).toBe(framesIn(usableFrameRanges(map)));
    expect(usablePages(map)).toBeGreaterThan(1_000_000);
  });

  it("merges overlapping and touching ranges in any order, leaving the input alone", () => {
    const input = [
      { start: 20, end: 30 },
      { start: 0, end: 5 },
      { start: 5, end: 8, node: 2 },
      { start: 25, end: 26 },
      { start: 9, end: 10 },
    ];
    const copy = JSON.parse(JSON.stringify(input));
    expect(mergeRanges(input)).toEqual([
      { start: 0, end: 8 },
      { start: 9, end: 10 },
      { start: 20, end: 30 },
    ]);
    expect(input).toEqual(copy);
  });
});
