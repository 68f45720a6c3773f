/**
 * One boot in a fresh process, for bench/boot.bench.ts: prints one JSON line with the host time and
 * the peak resident set size, so that runs do not pollute each other's memory figures.
 *   node --import tsx/esm bench/boot-one.ts '{"map":"qemu:1T","pmm":"bitmap"}'
 */
import { PagelabError } from "../src/errors.ts";
import { bootKernel } from "../src/kernel/boot/index.ts";

const opts = JSON.parse(process.argv[2] ?? "{}");
try {
  const r = bootKernel({ check: false, ...opts });
  console.log(
    JSON.stringify({
      ok: true,
      ramBytes: r.ramBytes,
      hostMs: r.hostMs,
      maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      backedMiB: Math.round(r.machine.mem.backedBytes / 2 ** 20),
      metadataBytes: r.metadataBytes,
      pageTablePages: r.pageTablePages,
    }),
  );
} catch (e) {
  if (!(e instanceof PagelabError)) throw e;
  console.log(JSON.stringify({ ok: false, error: `${e.code}: ${e.message}` }));
}
