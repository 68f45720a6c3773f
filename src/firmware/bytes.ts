/**
 * Little-endian reading and writing for the binary formats, with bounds checks whose errors name the
 * byte offset and the field. 64-bit fields are bigints (firmware tables may use all 64 bits).
 */
import { fail } from "../errors.ts";
import { whereByte } from "./text.ts";

export class Reader {
  readonly view: DataView;
  readonly length: number;

  constructor(
    readonly bytes: Uint8Array,
    readonly source?: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.length = bytes.byteLength;
  }

  private need(offset: number, size: number, field: string): void {
    if (offset < 0 || offset + size > this.length) {
      fail(
        "TRUNCATED",
        `${whereByte(this.source, offset)}: expected ${size} bytes for ${field}, but the input is ${this.length} bytes long`,
      );
    }
  }

  u32(offset: number, field: string): number {
    this.need(offset, 4, field);
    return this.view.getUint32(offset, true);
  }

  u64(offset: number, field: string): bigint {
    this.need(offset, 8, field);
    return this.view.getBigUint64(offset, true);
  }
}

export class Writer {
  private readonly buf: Uint8Array;
  private readonly view: DataView;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  u32(offset: number, v: number): void {
    this.view.setUint32(offset, v >>> 0, true);
  }

  u64(offset: number, v: bigint): void {
    this.view.setBigUint64(offset, BigInt.asUintN(64, v), true);
  }

  get bytes(): Uint8Array {
    return this.buf;
  }
}

/** Is this input binary (NUL bytes or mostly non-printable) rather than text? */
export function looksBinary(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 4096);
  let odd = 0;
  for (let i = 0; i < n; i++) {
    const b = bytes[i];
    if (b === 0) return true;
    if (b < 9 || (b > 13 && b < 32)) odd++;
  }
  return n > 0 && odd * 10 > n;
}
