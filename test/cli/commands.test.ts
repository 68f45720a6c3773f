/**
 * The CLI loads only the command it runs (src/cli/commands/index.ts). Every command the overview lists
 * must still load in full when named: its own help shows its options, and `help NAME` does too.
 */
import { describe, expect, it } from "vitest";
import { COMMAND_NAMES } from "../../src/cli/commands/index.ts";
import { pagelab } from "./run.ts";

describe("commands load on demand", () => {
  it("the overview lists every command, and each one's --help is its full help", () => {
    const top = pagelab("--help");
    expect(top.status).toBe(0);
    const section = top.stdout.slice(top.stdout.indexOf("Commands:"), top.stdout.indexOf("Start here:"));
    const listed = [...section.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)]
      .map((m) => m[1])
      .filter((n) => n !== "help");
    expect(listed).toEqual(COMMAND_NAMES);
    for (const name of COMMAND_NAMES) {
      const h = pagelab(name, "--help");
      expect(h.status, name).toBe(0);
      expect(h.stdout, name).toMatch(new RegExp(`^Usage: pagelab ${name}\\b`));
    }
    expect(pagelab("boot", "--help").stdout).toMatch(/--kmap <strategy>/);
    expect(pagelab("help", "pmm").stdout).toMatch(/--design <name\|file>/);
    expect(pagelab("include-path").stdout.trim()).toMatch(/include$/);
  }, 120_000);
});
