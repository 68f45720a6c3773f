/**
 * The `pagelab` command line. Each subcommand lives in its own file under ./commands and registers
 * itself on the program; this file only assembles them and turns PagelabErrors into clear messages.
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { registerCommands } from "./commands/index.ts";
import { errorLine } from "./errors.ts";

const program = new Command()
  .name("pagelab")
  .description(
    "A laboratory for the memory manager of an x86-64 kernel: boot a simulated machine from a real " +
      "firmware memory map, bring up the memory-manager design you pick, and measure it with counters.",
  )
  .version("0.1.0")
  // Usage errors: one line on stderr, exit 2, before any work (commander would exit 1 and add a
  // second line; its exit would also bypass the handler below).
  .exitOverride()
  .configureOutput({ outputError: () => {} })
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

/**
 * The command this run needs, loaded alone: the first argument that is not an option (`help NAME`
 * asks for NAME). The others are stubs that only list themselves in `pagelab --help`.
 */
function wantedCommand(args: string[]): string | undefined {
  const words = args.filter((a) => !a.startsWith("-"));
  return words[0] === "help" ? words[1] : words[0];
}

/** Print one line for any error and exit: usage and input errors 2, anything else 70 (a bug). */
function die(e: unknown): never {
  if (e instanceof CommanderError) {
    // --help and --version "fail" with status 0; a bare `pagelab pt` prints its help, status 2.
    if (e.exitCode === 0) process.exit(0);
    if (e.code !== "commander.help" && e.code !== "commander.helpDisplayed")
      process.stderr.write(`pagelab: ${e.message.replace(/^error: /, "")} (see --help)\n`);
    process.exit(2);
  }
  const { line, status } = errorLine(e);
  process.stderr.write(`${line}\n`);
  if (status !== 2 && process.env.PAGELAB_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(status);
}

// `pagelab pt dump | head`: a reader that stops early is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  die(e);
});
process.on("uncaughtException", die);
process.on("unhandledRejection", die);

try {
  await registerCommands(program, wantedCommand(process.argv.slice(2)));
  await program.parseAsync(process.argv);
} catch (e) {
  die(e);
}
