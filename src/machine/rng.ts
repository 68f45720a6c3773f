/**
 * Seeded pseudo-random numbers for deterministic workloads and traces (never for anything secret).
 *
 * `Rng` is splitmix32 (Steele, Lea & Flood's SplitMix, 32-bit variant as used by many JS ports): one
 * 32-bit state word, period 2^32, passes the usual smoke tests, and is trivial to reproduce in C:
 *
 *     uint32_t next(uint32_t *s) { uint32_t z = (*s += 0x9e3779b9u);
 *       z = (z ^ (z >> 16)) * 0x21f0aaadu; z = (z ^ (z >> 15)) * 0x735a2d97u; return z ^ (z >> 15); }
 *
 * so that bench/native can regenerate the same traces from the same seed.
 */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** Next 32-bit unsigned value. */
  nextU32(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  }

  /** Uniform integer in [0, n) for n >= 1 (n below 2^32; modulo bias is negligible for small n). */
  below(n: number): number {
    return this.nextU32() % n;
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.nextU32() / 4294967296;
  }

  /** The current state (to resume or to hand to a C twin). */
  get state(): number {
    return this.s;
  }
}
