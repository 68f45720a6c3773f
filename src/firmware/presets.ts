/**
 * Built-in maps for people with nothing to paste. Each is modelled on a real table (the QEMU boots in
 * the corpus, corpus/qemu/*.log) so that what pagelab boots looks like what Linux saw:
 *
 *   qemu:SIZE      QEMU `-M pc` + SeaBIOS. Below 4 GiB: RAM up to 3 GiB when SIZE >= 3.5 GiB (else all of
 *                  it), EBDA 0x9fc00, BIOS 0xf0000, SeaBIOS's 128 KiB at the top of low RAM, the 256 KiB
 *                  BIOS ROM at 0xfffc0000; the rest above 4 GiB; the reserved HyperTransport window at
 *                  0xfd00000000 (1012 GiB). `qemu:4G` is exactly corpus/qemu/pc-4g.log (the default map).
 *   qemu-q35:SIZE  QEMU `-M q35` + SeaBIOS: low RAM up to 2 GiB when SIZE >= 2.75 GiB, PCIe MMCONFIG at
 *                  0xb0000000, the RCBA page 0xfed1c000 (modelled on corpus/qemu/numa2-q35-6g.log).
 *   ovmf:512M      QEMU q35 + OVMF (UEFI) with 512 MiB: the EFI stub's E820 table, exactly as in
 *                  corpus/qemu/ovmf-q35-512m-noefidebug.log (ACPI NVS islands, reserved runtime areas).
 *   sparse         4 GiB at 0 (less the legacy hole) plus 2 TiB at 128 TiB: the classic sparse map
 *                  (a span of 130 TiB, of which 2 TiB + 4 GiB is RAM).
 *   numa:NxSIZE    q35 with N nodes of SIZE each; SRAT affinity assigned as QEMU does (node 0 first,
 *                  low RAM before high RAM), as in corpus/qemu/numa2-q35-6g.log.
 *
 * SIZE is a number with K, M, G or T (binary units): 4G, 512M, 1536M.
 */
import { fail } from "../errors.ts";
import { E820 } from "./e820-types.ts";
import { sanitize } from "./sanitize.ts";
import type { MapEntry, MemoryMap, NodeRange } from "./types.ts";

/** Preset names and patterns, for help texts and error messages. */
export const PRESETS = ["qemu:4G", "qemu-q35:5G", "ovmf:512M", "sparse", "numa:2x8G"] as const;
export const PRESET_PATTERNS = ["qemu:SIZE", "qemu-q35:SIZE", "ovmf:512M", "sparse", "numa:NxSIZE"] as const;
export const DEFAULT_PRESET = "qemu:4G";

const K = 1024n;
const M = K * K;
const G = M * K;
const T = G * K;
const FOUR_G = 4n * G;
const { RAM, RESERVED, ACPI, NVS } = E820;

/** Parse `4G`, `512M`, `1536M`, `2T` into bytes; throws naming the preset. */
export function parseSize(text: string, preset: string): bigint {
  const m = /^(\d{1,7})([KMGT])i?B?$/i.exec(text);
  if (!m)
    fail("BAD_PRESET", `preset '${preset}': size '${text}' is not a number with K, M, G or T (e.g. 4G)`);
  const unit = { K, M, G, T }[m[2].toUpperCase() as "K" | "M" | "G" | "T"];
  const bytes = BigInt(m[1]) * unit;
  if (bytes < 16n * M || bytes > 64n * T) fail("BAD_PRESET", `preset '${preset}': size must be 16M..64T`);
  if (bytes % (4n * K) !== 0n) fail("BAD_PRESET", `preset '${preset}': size must be a multiple of 4K`);
  return bytes;
}

const e = (start: bigint, endEx: bigint, type: number): MapEntry => ({ start, end: endEx - 1n, type });

/** SeaBIOS's low area: 639 KiB RAM, EBDA, BIOS segment. */
function seabiosLow(): MapEntry[] {
  return [e(0n, 0x9fc00n, RAM), e(0x9fc00n, 0xa0000n, RESERVED), e(0xf0000n, 0x100000n, RESERVED)];
}

/** RAM above 4 GiB plus QEMU's reserved HyperTransport window. */
function high(bytes: bigint): MapEntry[] {
  const out = bytes > 0n ? [e(FOUR_G, FOUR_G + bytes, RAM)] : [];
  return [...out, e(0xfd00000000n, 0x10000000000n, RESERVED)];
}

function qemuPc(size: bigint): MapEntry[] {
  const low = size >= 0xe0000000n ? 0xc0000000n : size;
  return [
    ...seabiosLow(),
    e(0x100000n, low - 0x20000n, RAM),
    e(low - 0x20000n, low, RESERVED),
    e(0xfffc0000n, FOUR_G, RESERVED),
    ...high(size - low),
  ];
}

function q35Low(size: bigint): bigint {
  return size >= 0xb0000000n ? 0x80000000n : size;
}

function qemuQ35(size: bigint): MapEntry[] {
  const low = q35Low(size);
  return [
    ...seabiosLow(),
    e(0x100000n, low - 0x21000n, RAM),
    e(low - 0x21000n, low, RESERVED),
    e(0xb0000000n, 0xc0000000n, RESERVED),
    e(0xfed1c000n, 0xfed20000n, RESERVED),
    e(0xfffc0000n, FOUR_G, RESERVED),
    ...high(size - low),
  ];
}

/** The EFI stub's table from corpus/qemu/ovmf-q35-512m-noefidebug.log, verbatim. */
function ovmf512(): MapEntry[] {
  const rows: [bigint, bigint, number][] = [
    [0x0n, 0xa0000n, RAM],
    [0x100000n, 0x806000n, RAM],
    [0x806000n, 0x808000n, NVS],
    [0x808000n, 0x810000n, RAM],
    [0x810000n, 0x900000n, NVS],
    [0x900000n, 0x1eaa0000n, RAM],
    [0x1eaa0000n, 0x1eba2000n, RESERVED],
    [0x1eba2000n, 0x1f4ec000n, RAM],
    [0x1f4ec000n, 0x1f76c000n, RESERVED],
    [0x1f76c000n, 0x1f77e000n, ACPI],
    [0x1f77e000n, 0x1f7fe000n, NVS],
    [0x1f7fe000n, 0x1fef4000n, RAM],
    [0x1fef4000n, 0x1ff78000n, RESERVED],
    [0x1ff78000n, 0x20000000n, NVS],
    [0xb0000000n, 0xc0000000n, RESERVED],
    [0xffc00000n, FOUR_G, RESERVED],
  ];
  return rows.map(([s, t, ty]) => e(s, t, ty));
}

function sparse(): MapEntry[] {
  return [
    e(0n, 0xa0000n, RAM),
    e(0xa0000n, 0x100000n, RESERVED),
    e(0x100000n, FOUR_G, RAM),
    e(128n * T, 130n * T, RAM),
  ];
}

/** SRAT as QEMU builds it: node i gets the i-th SIZE bytes of RAM, low RAM first, then from 4 GiB. */
function numaNodes(count: number, size: bigint, low: bigint): NodeRange[] {
  const out: NodeRange[] = [];
  let cursor = 0n; // RAM offset, 0..count*size
  for (let node = 0; node < count; node++) {
    const from = cursor;
    const to = cursor + size;
    if (from < low) out.push({ node, start: from, end: (to < low ? to : low) - 1n });
    if (to > low) {
      const s = from > low ? from : low;
      out.push({ node, start: FOUR_G + (s - low), end: FOUR_G + (to - low) - 1n });
    }
    cursor = to;
  }
  return out;
}

function build(name: string, entries: MapEntry[], nodes?: NodeRange[]): MemoryMap {
  return sanitize({ format: `preset:${name}`, entries, changes: [], nodes, source: name });
}

function numaPreset(name: string, spec: string): MemoryMap {
  const m = /^(\d{1,2})x(.+)$/i.exec(spec);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 64) {
    fail("BAD_PRESET", `preset '${name}': expected numa:NxSIZE with N nodes 1..64 (e.g. numa:2x8G)`);
  }
  const count = Number(m[1]);
  const size = parseSize(m[2], name);
  const total = size * BigInt(count);
  return build(name, qemuQ35(total), numaNodes(count, size, q35Low(total)));
}

/** Is `name` a preset (or a preset pattern such as qemu:8G) rather than a file name? */
export function isPresetName(name: string): boolean {
  return /^(qemu|qemu-q35|ovmf|numa):/.test(name) || name === "sparse";
}

/** The map of a preset; throws BAD_PRESET listing the presets when the name is not one. */
export function getPreset(name: string): MemoryMap {
  const [kind, arg = ""] = name.split(/:(.*)/s);
  if (kind === "qemu" && arg) return build(name, qemuPc(parseSize(arg, name)));
  if (kind === "qemu-q35" && arg) return build(name, qemuQ35(parseSize(arg, name)));
  if (kind === "ovmf" && /^512M(iB)?$/i.test(arg)) return build(name, ovmf512());
  if (kind === "sparse" && !arg) return build(name, sparse());
  if (kind === "numa" && arg) return numaPreset(name, arg);
  return fail(
    "BAD_PRESET",
    `'${name}' is not a preset (expected one of ${PRESET_PATTERNS.join(", ")}; e.g. ${PRESETS.join(", ")})`,
  );
}
