/**
 * The entry point other floors use: `loadMap("qemu:4G")`, `loadMap("dmesg.txt")`,
 * `loadMap("memmap.bin", { format: "uefi" })`. Reads the file (or resolves the preset), detects the
 * format unless told, parses and sanitizes. Pure apart from reading the one file.
 */
import { readFileSync } from "node:fs";
import { fail } from "../errors.ts";
import { detectFormat, FORMATS, type FormatId, parseAs } from "./detect.ts";
import { getPreset, isPresetName } from "./presets.ts";
import { sanitize } from "./sanitize.ts";
import type { MemoryMap } from "./types.ts";

export interface LoadOptions {
  /** Force a format instead of auto-detecting (one of FORMATS). */
  format?: string;
  /** UEFI input: keep BootServicesCode/Data reserved instead of usable. */
  keepBootServices?: boolean;
}

function checkFormat(format: string): FormatId {
  if (!(FORMATS as readonly string[]).includes(format)) {
    fail("BAD_FORMAT", `unknown format '${format}' (expected one of ${FORMATS.join(", ")})`);
  }
  return format as FormatId;
}

/** Parse bytes already in memory (e.g. from a test or stdin) and sanitize. */
export function loadBytes(bytes: Uint8Array, opts: LoadOptions & { source?: string } = {}): MemoryMap {
  const format = opts.format ? checkFormat(opts.format) : detectFormat(bytes, opts.source);
  return sanitize(parseAs(format, bytes, { source: opts.source, keepBootServices: opts.keepBootServices }));
}

/** Read a file or resolve a preset, detect its format (unless `opts.format`), parse and sanitize. */
export function loadMap(fileOrPreset: string, opts: LoadOptions = {}): MemoryMap {
  if (isPresetName(fileOrPreset) && !opts.format) return getPreset(fileOrPreset);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(fileOrPreset);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? String(e);
    return fail("NO_FILE", `cannot read '${fileOrPreset}' (${why}); not a preset either (try qemu:4G)`);
  }
  return loadBytes(bytes, { ...opts, source: fileOrPreset });
}
