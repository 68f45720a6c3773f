/**
 * Tests that need an outside tool (QEMU, a C toolchain, Chromium, clang). Under CI (`CI=true`) a tool
 * that is missing or cannot start is a failure, so a green run means the test really ran; elsewhere the
 * test skips and prints why.
 */
import { describe, it } from "vitest";

export const IN_CI = process.env.CI === "true" || process.env.CI === "1";

/**
 * `describe` when `reason` is empty; otherwise, under CI, a suite whose one test fails with the reason,
 * and outside CI a skipped suite (the reason printed once).
 */
export function describeWithTool(reason: string, name: string, body: () => void): void {
  if (reason === "") {
    describe(name, body);
    return;
  }
  if (IN_CI) {
    describe(name, () => {
      it("has its tool (CI=true: a missing tool fails)", () => {
        throw new Error(`${name}: ${reason}`);
      });
    });
    return;
  }
  console.warn(`SKIPPED: ${name}: ${reason}`);
  describe.skip(name, body);
}

const warned = new Set<string>();

/**
 * Inside a test: a tool that failed to start skips it (the reason printed once, as the default reporter
 * does not show a skip's note), or fails it under CI.
 */
export function toolFailed(ctx: { skip: (note?: string) => void }, reason: string): void {
  if (IN_CI) throw new Error(`${reason} (CI=true: a tool that cannot start fails)`);
  if (!warned.has(reason)) {
    warned.add(reason);
    console.warn(`SKIPPED: ${reason}`);
  }
  ctx.skip(reason);
}

/**
 * `it` for tests that need a tool: the test itself when `reason` is empty; otherwise, under CI, a test
 * that fails with the reason, and outside CI a skipped test (the reason printed once per call).
 */
export function itWithTool(reason: string): (name: string, fn: () => unknown, timeout?: number) => void {
  if (reason === "") return (name, fn, timeout) => it(name, fn, timeout);
  if (IN_CI)
    return (name, _fn, timeout) =>
      it(
        name,
        () => {
          throw new Error(`${reason} (CI=true: a missing tool fails)`);
        },
        timeout,
      );
  console.warn(`SKIPPED (tests that need it): ${reason}`);
  return (name, fn, timeout) => it.skip(name, fn, timeout);
}
