/**
 * `/proc/iomem`: the kernel's resource tree, one resource per line, children indented by two spaces:
 *
 *     00000000-00000fff : Reserved
 *     00001000-0009fbff : System RAM
 *     000a0000-000bffff : PCI Bus 0000:00
 *     00100000-bffdffff : System RAM
 *       2b600000-2c401d31 : Kernel code
 *
 * kernel/resource.c prints it (`r_show`: START-END inclusive, hex, width by address size). The e820
 * entries are the top-level resources named with `e820_type_to_string()` words (System RAM, Reserved,
 * ACPI Tables, ...); PCI windows, ROMs and devices are skipped (and counted in a note). Read without
 * root, every address is 0: that is refused with an explanation.
 */
import { fail } from "../errors.ts";
import { FIRMWARE_WORDS } from "./sysfs.ts";
import { parseHex, where } from "./text.ts";
import type { Change, MapEntry, MemoryMap } from "./types.ts";

const ROW = /^( *)([0-9a-f]{1,16})-([0-9a-f]{1,16}) : (.+)$/i;

export function parseIomem(text: string, source?: string): MemoryMap {
  const entries: MapEntry[] = [];
  const skipped = new Map<string, number>();
  let rows = 0;
  let allZero = true;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = ROW.exec(lines[i].replace(/\r$/, ""));
    if (!m) continue;
    rows++;
    const at = where(source, i + 1);
    const start = parseHex(m[2], "start", at);
    const end = parseHex(m[3], "end", at);
    if (start !== 0n || end !== 0n) allZero = false;
    if (m[1].length > 0) continue; // a child resource (kernel code, device BARs)
    const type = FIRMWARE_WORDS[m[4].trim()];
    if (type === undefined) skipped.set(m[4].trim(), (skipped.get(m[4].trim()) ?? 0) + 1);
    else entries.push({ start, end, type });
  }
  if (rows > 0 && allZero) {
    fail(
      "IOMEM_HIDDEN",
      `${source ?? "input"}: every address is 0: /proc/iomem hides addresses from non-root readers; read it as root`,
    );
  }
  if (entries.length === 0)
    fail(
      "NO_TABLE",
      `${source ?? "input"}: no /proc/iomem lines naming RAM (e.g. '00100000-bffdffff : System RAM')`,
    );
  const changes: Change[] = [];
  if (skipped.size > 0) {
    const list = [...skipped].map(([k, v]) => (v > 1 ? `${k} x${v}` : k)).join(", ");
    changes.push({ kind: "note", message: `skipped top-level resources that are not e820 ranges: ${list}` });
  }
  return { format: "iomem", entries, changes, source };
}
