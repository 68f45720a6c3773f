/**
 * Shared helpers for the text parsers: line splitting with 1-based numbers, log-prefix stripping, and
 * strict number parsing that throws a PagelabError naming the file, line and field.
 */
import { fail } from "../errors.ts";

export interface Line {
  /** 1-based line number in the input. */
  no: number;
  /** The line with log prefixes (timestamps, syslog, `> ` quoting) removed and trimmed. */
  text: string;
}

/** `file:line` (or `line N` without a file), for messages. */
export function where(source: string | undefined, line: number): string {
  return source ? `${source}:${line}` : `line ${line}`;
}

/** `file: byte offset N` for binary inputs. */
export function whereByte(source: string | undefined, offset: number): string {
  return `${source ? `${source}: ` : ""}byte offset ${offset}`;
}

/** `Dec  5 10:00:00 host kernel:` (syslog, journalctl -k; fractions with -o short-precise) or ISO times. */
const SYSLOG = /^(?:[A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\d[T ]\S+) \S+ kernel: ?/;
/** `[    0.000000]` (dmesg), `[Sat Dec  5 10:00:00 2026]` (dmesg -T), `[Dec 5 10:00]` variants. */
const TIMESTAMP = /^\[ *(?:\d+\.\d+|[A-Z][a-z]{2} [^\]]*\d\d:\d\d[^\]]*)\] ?/;
/** `kern  :info  : ` (dmesg -x). */
const FACILITY = /^[a-z]+ *:[a-z]+ *: /;

/** Remove what wraps a kernel log line: e-mail quoting, `<6>` levels, syslog/journal prefixes, `[ 0.000000]`. */
export function stripLogPrefix(raw: string): string {
  let s = raw.charCodeAt(raw.length - 1) === 13 ? raw.slice(0, -1) : raw;
  s = s.replace(/^(?:\s*>)+ ?/, "").trimStart();
  s = s.replace(FACILITY, "");
  s = s.replace(/^<\d{1,3}>/, "");
  s = s.replace(SYSLOG, "");
  s = s.replace(/^kernel: ?/, "");
  s = s.replace(/^<\d{1,3}>/, "");
  s = s.replace(TIMESTAMP, "");
  return s.trim();
}

export function splitLines(text: string, strip = true): Line[] {
  return text
    .split("\n")
    .map((t, i) => ({ no: i + 1, text: strip ? stripLogPrefix(t) : t.replace(/\r$/, "").trim() }));
}

/** Parse hex (`0x1f`, `1f`, at most 16 digits) into a bigint, or throw naming the field. */
export function parseHex(s: string, field: string, at: string): bigint {
  const m = /^(?:0x)?([0-9a-f]{1,16})$/i.exec(s);
  if (!m) fail("BAD_NUMBER", `${at}: ${field} '${s}' is not a hexadecimal number of at most 64 bits`);
  return BigInt(`0x${m[1]}`);
}

/** Parse a decimal or 0x-hex number (at most 64 bits) into a bigint, or throw naming the field. */
export function parseNumber(s: string, field: string, at: string): bigint {
  if (/^0x[0-9a-f]{1,16}$/i.test(s)) return BigInt(s);
  if (/^\d{1,20}$/.test(s) && BigInt(s) < 1n << 64n) return BigInt(s);
  return fail("BAD_NUMBER", `${at}: ${field} '${s}' is not a number of at most 64 bits (decimal or 0x hex)`);
}
