/**
 * Linear (virtual) addresses at the edges.
 *
 * Inside pagelab a virtual page is a *virtual page number* (VPN): the linear address with its
 * sign-extension bits dropped, shifted right by 12. With 4-level paging (48-bit addresses) a VPN has
 * 36 bits; with 5-level paging (LA57, 57-bit addresses), 45 bits. Both are plain numbers.
 *
 *  4-level:  63 ........ 48 47 .. 39 38 .. 30 29 .. 21 20 .. 12 11 ..... 0
 *           [sign ext. of 47][ PML4  ][ PDPT  ][  PD   ][  PT   ][ offset ]
 *  5-level:  63 .. 57 56 .. 48 47 .. 39 ...
 *           [sign 56][ PML5 ][ PML4  ] ...
 *
 * Addresses cross the API as bigint or as canonical hex strings, and are checked for canonical form
 * (bits 63..N-1 all equal) here, once.
 */
import { fail } from "../../errors.ts";

export type Levels = 4 | 5;

export function vaBits(levels: Levels): number {
  return levels === 5 ? 57 : 48;
}

/** Number of distinct VPNs (2^36 or 2^45). */
export function vpnLimit(levels: Levels): number {
  return 2 ** (vaBits(levels) - 12);
}

export function isCanonical(va: bigint, levels: Levels): boolean {
  const bits = BigInt(vaBits(levels));
  const top = va >> (bits - 1n);
  return va >= 0n && va < 1n << 64n && (top === 0n || top === (1n << (65n - bits)) - 1n);
}

/** Parse "0xffff888000000000", "ffff8880_00000000" or a decimal string into a bigint. */
export function parseAddress(s: string, what = "address"): bigint {
  const t = s.trim().replace(/_/g, "");
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(t))
    fail("BAD_ADDRESS", `${what} "${s}" is not a hex (0x...) or decimal number`);
  const v = BigInt(t);
  if (v >= 1n << 64n) fail("BAD_ADDRESS", `${what} ${s} does not fit in 64 bits`);
  return v;
}

/** Split a canonical linear address into its VPN and page offset; throws NON_CANONICAL otherwise. */
export function vaToVpn(va: bigint, levels: Levels): { vpn: number; offset: number } {
  if (!isCanonical(va, levels)) {
    fail(
      "NON_CANONICAL",
      `0x${va.toString(16)} is not canonical for ${levels}-level paging: bits 63..${vaBits(levels) - 1} must all equal bit ${vaBits(levels) - 1}`,
      { va: `0x${va.toString(16)}` },
    );
  }
  const mask = (1n << BigInt(vaBits(levels))) - 1n;
  const low = va & mask;
  return { vpn: Number(low >> 12n), offset: Number(low & 0xfffn) };
}

/** The canonical linear address of a VPN (sign-extended) plus an offset. */
export function vpnToVa(vpn: number, levels: Levels, offset = 0): bigint {
  const bits = BigInt(vaBits(levels));
  let va = (BigInt(vpn) << 12n) | BigInt(offset);
  if ((va >> (bits - 1n)) & 1n) va |= ((1n << 64n) - 1n) ^ ((1n << bits) - 1n);
  return va;
}

export function formatVa(vpn: number, levels: Levels, offset = 0): string {
  return `0x${vpnToVa(vpn, levels, offset).toString(16).padStart(16, "0")}`;
}

/** 2^(9 * (level - 1)): how many VPNs one entry at `level` spans (index 1..5). */
export const LEVEL_SPAN = [0, 1, 512, 262144, 134217728, 68719476736] as const;

/**
 * Index into the table at `level` (1 = PT .. 5 = PML5) for a VPN. Levels 1-3 take bits below 32 with
 * shifts; levels 4-5 divide (a VPN has up to 45 bits) and let `& 511` truncate, as ToInt32 does.
 */
export function tableIndex(vpn: number, level: number): number {
  return level <= 3 ? (vpn >>> ((level - 1) * 9)) & 511 : (vpn / LEVEL_SPAN[level]) & 511;
}

/** Parse an address string and convert it to a VPN in one step. */
export function parseVpn(s: string, levels: Levels): { vpn: number; offset: number; va: bigint } {
  const va = parseAddress(s, "virtual address");
  return { ...vaToVpn(va, levels), va };
}
