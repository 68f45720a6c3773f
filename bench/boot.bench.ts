/**
 * Boot at scale (issue: "a machine described by a sparse map must boot in time and host memory
 * proportional to its RAM's metadata, not to the address span"): host time and peak host memory of
 * `pagelab boot --kmap direct` for each PMM on 4 GiB, 64 GiB, 1 TiB and the sparse map (4 GiB + 2 TiB at
 * 128 TiB, with 5-level paging so the direct map reaches it). Each boot runs in its own process.
 * Designs whose host memory would exceed the budget are refused up front by `pagelab boot` and shown so.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const ONE = fileURLToPath(new URL("./boot-one.ts", import.meta.url));
const MAPS: [string, Record<string, unknown>][] = [
  ["qemu:4G", {}],
  ["qemu:64G", {}],
  ["qemu:1T", {}],
  ["sparse", { levels: 5 }],
];
const PMMS = ["bitmap", "buddy", "stack", "stack-pages", "freelist"];

export default async function bootBench(): Promise<void> {
  console.log("map        pmm           RAM        boot ms   peak RSS MiB  backed MiB  metadata");
  for (const [map, extra] of MAPS) {
    for (const pmm of PMMS) {
      const r = spawnSync(
        process.execPath,
        ["--import", "tsx/esm", ONE, JSON.stringify({ map, pmm, kmap: "direct", ...extra })],
        {
          encoding: "utf8",
          maxBuffer: 1 << 20,
        },
      );
      const line = r.stdout.trim().split("\n").pop() ?? "";
      let j: Record<string, number | string | boolean>;
      try {
        j = JSON.parse(line);
      } catch {
        console.log(
          `${map.padEnd(10)} ${pmm.padEnd(13)} crashed: ${r.stderr.split("\n").slice(0, 2).join(" ")}`,
        );
        continue;
      }
      if (!j.ok) {
        console.log(`${map.padEnd(10)} ${pmm.padEnd(13)} refused: ${String(j.error).slice(0, 110)}`);
        continue;
      }
      const gib = (Number(j.ramBytes) / 2 ** 30).toFixed(0);
      console.log(
        `${map.padEnd(10)} ${pmm.padEnd(13)} ${`${gib} GiB`.padEnd(10)} ${String(j.hostMs).padStart(7)}   ${String(j.maxRssMiB).padStart(12)}  ${String(j.backedMiB).padStart(10)}  ${(Number(j.metadataBytes) / 2 ** 20).toFixed(1)} MiB`,
      );
    }
  }
  console.log("aim: 1 TiB with the bitmap PMM in under 2 s and under 200 MiB of host memory");
}
