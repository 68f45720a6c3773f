/** Every subcommand, in the order `pagelab --help` lists them. Add one line per command file. */
import type { Command } from "@commander-js/extra-typings";
import { registerAudit } from "./audit.ts";
import { registerBoot } from "./boot.ts";
import { registerCompare } from "./compare.ts";
import { registerDemo } from "./demo.ts";
import { registerMap } from "./map.ts";
import { registerNewPmm } from "./new-pmm.ts";
import { registerPmm } from "./pmm.ts";
import { registerPt } from "./pt.ts";
import { registerServe } from "./serve.ts";

export function registerCommands(program: Command): void {
  registerBoot(program);
  registerAudit(program);
  registerCompare(program);
  registerDemo(program);
  registerMap(program);
  registerNewPmm(program);
  registerPmm(program);
  registerPt(program);
  registerServe(program);
}
