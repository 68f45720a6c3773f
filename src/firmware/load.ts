/**
 * The entry point other floors use: `loadMap("qemu:4G")`, `loadMap("dmesg.txt")`,
 * `loadMap("memmap.bin", { format: "uefi" })`. Reads the file (or resolves the preset), detects the
 * format unless told, parses and sanitizes. Pure apart from reading the one file.
 */
import { readFileSync } from "node:fs";
import { fail } from "../errors.ts";
import { corpusMap, isCorpusName } from "./corpus.ts";
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

/** The input formats a map may be given in (for a format picker: `--format`, the explorer's paste box). */
export const MAP_FORMATS: readonly FormatId[] = FORMATS;
export type MapFormat = FormatId;

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

/**
 * Parse a map given as text (pasted) or bytes (uploaded): detected by content unless `format` names
 * one (`"auto"` or undefined: detect), then sanitized. `name` is used in error messages
 * (`name:line: ...`). Throws PagelabError (EMPTY, UNKNOWN_FORMAT, BAD_FORMAT, BAD_LINE, ...).
 */
export function parseMapText(
  input: string | Uint8Array,
  opts: { format?: MapFormat | "auto"; name?: string; keepBootServices?: boolean } = {},
): MemoryMap {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  const format = opts.format === "auto" ? undefined : opts.format;
  return loadBytes(bytes, { format, source: opts.name, keepBootServices: opts.keepBootServices });
}

/** `-` names standard input; it is read once (every later `loadMap("-")` sees the same bytes). */
export const STDIN = "-";
let stdinBytes: Uint8Array | undefined;

function readStdin(): Uint8Array {
  if (stdinBytes === undefined) {
    try {
      stdinBytes = readFileSync(0);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? String(e);
      return fail("NO_FILE", `cannot read standard input ('-') (${why})`);
    }
  }
  return stdinBytes;
}

/**
 * Read a file (`-`: standard input), resolve a preset or a corpus map (`corpus:ID`, or a selector
 * naming one machine: ./corpus.ts), detect its format (unless `opts.format`),
 * parse and sanitize.
 */
export function loadMap(fileOrPreset: string, opts: LoadOptions = {}): MemoryMap {
  if (fileOrPreset === STDIN) return loadBytes(readStdin(), { ...opts, source: "<stdin>" });
  if (isPresetName(fileOrPreset) && !opts.format) return getPreset(fileOrPreset);
  if (isCorpusName(fileOrPreset) && !opts.format) return corpusMap(fileOrPreset);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(fileOrPreset);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? String(e);
    return fail("NO_FILE", `cannot read '${fileOrPreset}' (${why}); not a preset either (try qemu:4G)`);
  }
  return loadBytes(bytes, { ...opts, source: fileOrPreset });
}
