/**
 * `pagelab new-pmm c my_pmm.c`: write a commented starting point for an allocator in C (the linked
 * stack pages of examples/c/stack_pages.c, named after the file), which compiles and validates as it is.
 * `pagelab include-path`: where include/pagelab/pmm.h is, for the user's kernel build (-I).
 */
import { SUMMARY } from "./index.ts";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, extname, join } from "node:path";
import type { Command } from "@commander-js/extra-typings";
import { fail } from "../../errors.ts";
import { includeDir } from "../../kernel/pmm/wasm/compile.ts";

const LANGS: Record<string, { ext: string; example: string }> = {
  c: { ext: ".c", example: "examples/c/stack_pages.c" },
  rust: { ext: ".rs", example: "examples/rust/stack_pages.rs" },
};

export function registerNewPmm(program: Command): void {
  program
    .command("new-pmm")
    .description(SUMMARY["new-pmm"])
    .argument("<language>", `c or rust`)
    .argument("<file>", "the file to write (my_pmm.c)")
    .option("--force", "overwrite an existing file")
    .addHelpText(
      "after",
      `
The file is the linked stack pages (examples/c/stack_pages.c): 511 frame numbers and a link per free
page, the emptied page handed out. It compiles and validates unchanged:

  pagelab new-pmm c my_pmm.c
  pagelab pmm --design ./my_pmm.c            # measures and the validation report
  pagelab boot --pmm ./my_pmm.c              # validated, then booted
  clang --target=x86_64-unknown-none -ffreestanding -mno-red-zone -I"$(pagelab include-path)" -c my_pmm.c`,
    )
    .action((language, file, o) => {
      const lang = LANGS[language];
      if (lang === undefined) fail("BAD_OPTION", `new-pmm: language must be c or rust, got '${language}'`);
      if (extname(file) !== lang.ext)
        fail("BAD_OPTION", `new-pmm: a ${language} allocator goes in a ${lang.ext} file, got '${file}'`);
      if (existsSync(file) && o.force !== true)
        fail("BAD_OPTION", `new-pmm: ${file} exists (--force overwrites it)`);
      const src = join(includeDir(), "..", lang.example);
      const name = basename(file);
      const text = readFileSync(src, "utf8")
        .replace(/PMM_DESIGN\("stack_pages\.c",/, `PMM_DESIGN("${name}",`)
        .replace(/const NAME: &\[u8\] = b"stack_pages\.rs\\0";/, `const NAME: &[u8] = b"${name}\\0";`)
        .replace(/examples\/(c|rust)\/stack_pages\.(c|rs)/g, name);
      writeFileSync(file, text);
      console.log(
        `wrote ${file} (linked stack pages, from ${lang.example}); next: pagelab boot --pmm ./${file}`,
      );
    });
}

export function registerIncludePath(program: Command): void {
  program
    .command("include-path")
    .description(SUMMARY["include-path"])
    .action(() => {
      console.log(includeDir());
    });
}
