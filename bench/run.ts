/**
 * `npm run bench`: runs every bench/*.bench.ts (or the ones named on the command line, e.g.
 * `npm run bench -- mmu`) in alphabetical order, the aims table last. Each file's default export is an async function that
 * prints its figures. Benchmarks print; they never assert on host time.
 */
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort()
  // The aims table comes last: it quotes the PMM benchmark's ratios to C from the same run.
  .sort((a, b) => Number(a.startsWith("aims")) - Number(b.startsWith("aims")));

console.log(`pagelab benchmarks - node ${process.version}, ${process.arch}, ${new Date().toISOString()}`);
for (const f of files) {
  console.log(`\n=== ${f.replace(".bench.ts", "")} ===`);
  const mod = (await import(join(here, f))) as { default: () => Promise<void> };
  await mod.default();
}
