/**
 * The `pagelab` command line. Each subcommand lives in its own file under ./commands and registers
 * itself on the program; this file only assembles them and turns PagelabErrors into clear messages.
 */
import { Command } from "@commander-js/extra-typings";
import { PagelabError } from "../errors.ts";
import { registerCommands } from "./commands/index.ts";

const program = new Command()
  .name("pagelab")
  .description(
    "A laboratory for the memory manager of an x86-64 kernel: boot a simulated machine from a real " +
      "firmware memory map, bring up the memory-manager design you pick, and measure it with counters.",
  )
  .version("0.1.0")
  .showHelpAfterError("(run with --help for usage)")
  .addHelpText(
    "after",
    `
Start here:
  pagelab boot                                   boot the default 4 GiB machine (buddy PMM, direct map), step by step
  pagelab boot --pmm bitmap --kmap recursive --log
  pagelab map /var/log/dmesg                     what Linux made of your firmware's memory map
  pagelab compare --pmm buddy,bitmap --out cmp   designs side by side: report.md, report.html, results.json
  pagelab audit --kmap quickmap                  the security cost of a design
  pagelab serve                                  explore memory and page tables in a browser

Every command has --help with examples; most have --json. Errors exit 2.`,
  );

registerCommands(program);

// `pagelab pt dump | head`: a reader that stops early is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof PagelabError) {
    process.stderr.write(`pagelab: error [${e.code}]: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
}
