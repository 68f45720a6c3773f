/**
 * Every subcommand, in the order `pagelab --help` lists them: its name, the one line the overview
 * shows, and how to load it. Only the command being run is loaded (with what it imports), so
 * `pagelab --help` and `pagelab map` do not pay for the kernel, the compare report or the server.
 * Add one entry per command file; the file's register function uses `SUMMARY[name]` as description.
 */
import type { Command } from "@commander-js/extra-typings";

type Register = (program: Command) => void;

export const SUMMARY = {
  boot: "boot a simulated kernel from a firmware map: early allocator, PMM, kernel mappings, told step by step",
  audit:
    "boot, then audit the kernel address space: W+X, user-accessible kernel pages, exposure, KASLR entropy",
  compare: "compare designs on workloads in parallel; write results.json, report.md and report.html",
  demo: "a guided tour of a booted kernel's address space, step by step, with the counters of each step",
  map: "read a firmware memory map (dmesg, sysfs, iomem, E820, Multiboot2, Limine, UEFI, JSON/YAML or a preset)",
  "new-pmm": "write a commented starting point for your own allocator (C or Rust, compiled to WebAssembly)",
  "include-path": "print the directory holding pagelab/pmm.h (for -I in your kernel's build)",
  pmm: "measure the physical memory managers (stack, stack pages, free list, bitmap, buddy, compositions)",
  pt: "page tables of a booted kernel: walk an address, dump the tables",
  serve:
    "start the web explorer on 127.0.0.1: boot a map, browse its frames, page tables, boot log and compare runs",
} as const;

export type CommandName = keyof typeof SUMMARY;

const LOAD: Record<CommandName, () => Promise<Register>> = {
  boot: async () => (await import("./boot.ts")).registerBoot,
  audit: async () => (await import("./audit.ts")).registerAudit,
  compare: async () => (await import("./compare.ts")).registerCompare,
  demo: async () => (await import("./demo.ts")).registerDemo,
  map: async () => (await import("./map.ts")).registerMap,
  "new-pmm": async () => (await import("./new-pmm.ts")).registerNewPmm,
  "include-path": async () => (await import("./new-pmm.ts")).registerIncludePath,
  pmm: async () => (await import("./pmm.ts")).registerPmm,
  pt: async () => (await import("./pt.ts")).registerPt,
  serve: async () => (await import("./serve.ts")).registerServe,
};

export const COMMAND_NAMES = Object.keys(SUMMARY) as CommandName[];

/**
 * Register the command named `wanted` in full (loading its module) and every other one as a stub
 * (name and summary, for the overview). `wanted` undefined: stubs only (`pagelab --help`).
 */
export async function registerCommands(program: Command, wanted?: string): Promise<void> {
  for (const name of COMMAND_NAMES) {
    if (name === wanted) (await LOAD[name]())(program);
    else program.command(name).description(SUMMARY[name]);
  }
}

/** Every command in full (for tests that walk the whole surface). */
export async function registerAllCommands(program: Command): Promise<void> {
  for (const name of COMMAND_NAMES) (await LOAD[name]())(program);
}
