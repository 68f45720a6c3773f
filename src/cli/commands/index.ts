/** Every subcommand, in the order `pagelab --help` lists them. Add one line per command file. */
import type { Command } from "@commander-js/extra-typings";
import { registerMap } from "./map.ts";

export function registerCommands(program: Command): void {
  registerMap(program);
}
