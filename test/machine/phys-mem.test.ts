import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { HOT_LINE_LOOKUPS, PhysMem, read64, write64 } from "../../src/machine/phys-mem.ts";

describe("PhysMem", () => {
  it("reads zero from untouched memory without backing it", () => {
    const m = new PhysMem({ maxPhysAddrBits: 52 });
    expect(m.read32(0x1234_5678_9000)).toBe(0);
    expect(m.backedBytes).toBe(0);
    m.write32(0x10, 0); // storing zero into untouched memory backs nothing
    expect(m.backedBytes).toBe(0);
  });

  it("stores u8/u16/u32/u64 little-endian, sparse across terabytes", () => {
    const m = new PhysMem({ maxPhysAddrBits: 52 });
    const far = 128 * 2 ** 40 + 0x1000; // 128 TiB
    m.write32(far, 0xdeadbeef);
    expect(m.read32(far)).toBe(0xdeadbeef);
    expect(m.read8(far)).toBe(0xef);
    expect(m.read8(far + 3)).toBe(0xde);
    expect(m.read16(far + 2)).toBe(0xdead);
    m.write8(far + 1, 0x11);
    expect(m.read32(far)).toBe(0xdead11ef);
    m.write16(far + 2, 0xcafe);
    expect(m.read32(far)).toBe(0xcafe11ef);
    write64(m, 0x2000, 2 ** 52 - 1);
    expect(read64(m, 0x2000)).toBe(2 ** 52 - 1);
    expect(m.backedBytes).toBe(2 * 64); // two scattered 64-byte lines, not two pages or two 2 MiB chunks
  });

  it("backs scattered words by the line, a busy page whole and a busy 2 MiB chunk densely, keeping the data", () => {
    const m = new PhysMem({ denseBudget: 0 }); // no chunk made dense for speed: only by its backed bytes
    const at = (page: number, off = 0) => 0x40000000 + page * 4096 + off;
    for (let i = 0; i < 63; i++) m.write32(at(i * 8), i + 1); // 63 pages, 32 KiB apart: a free list's links
    expect(m.backedBytes).toBe(63 * 64);
    for (let j = 0; j < 9; j++) m.write32(at(1, j * 64 + 4), 100 + j); // 9 lines of one page: it becomes whole
    expect(m.backedBytes).toBe(63 * 64 + 8 * 64 + 4096);
    m.fill(at(400), 61 * 4096, 0xa5); // whole pages are backed whole: just below 256 KiB in the chunk
    expect(m.backedBytes).toBe(63 * 64 + 8 * 64 + 62 * 4096);
    m.fill(at(461), 4096, 0xa5); // the chunk reaches 256 KiB: it becomes one 2 MiB array
    expect(m.backedBytes).toBe(2 * 1024 * 1024);
    for (let i = 0; i < 63; i++)
      expect(m.read32(at(i * 8))).toBe(i * 8 >= 400 && i * 8 < 462 ? 0xa5a5a5a5 : i + 1);
    for (let j = 0; j < 9; j++) expect(m.read32(at(1, j * 64 + 4))).toBe(100 + j);
    expect(m.isFilled(at(400), 62 * 4096, 0xa5)).toBe(true);
    expect(m.isFilled(0x40000004, 4092, 0)).toBe(true);
    expect(m.isFilled(0x40000000, 8, 0)).toBe(false);
  });

  it("makes a chunk with 64 touched pages dense while dense chunks are under the budget, then keeps lines", () => {
    const m = new PhysMem({ denseBudget: 2 ** 21 }); // room for one dense chunk
    const touch = (chunk: number) => {
      for (let i = 0; i < 64; i++) m.write32(chunk * 2 ** 21 + i * 4096 * 8, i + 1);
    };
    touch(0);
    expect(m.backedBytes).toBe(2 ** 21);
    touch(1); // over the budget: 64 lines
    expect(m.backedBytes).toBe(2 ** 21 + 64 * 64);
    for (let i = 0; i < 64; i++) expect(m.read32(2 ** 21 + i * 4096 * 8)).toBe(i + 1);
  });

  it("reads, copies and zeroes across line-backed, page-backed and untouched memory alike", () => {
    const m = new PhysMem();
    m.write32(0x5000 + 64 * 3, 7); // one line of page 5
    m.write32(0x5000 + 4092, 9); // and its last line
    const bytes = m.readBytes(0x4ffc, 4096 + 8);
    const words = new Uint32Array(bytes.buffer);
    expect(words[1 + 48]).toBe(7);
    expect(words[1 + 1023]).toBe(9);
    expect(words.reduce((a, x) => a + x, 0)).toBe(16);
    m.copy(0x9000, 0x5000, 4096);
    expect(m.read32(0x9000 + 64 * 3)).toBe(7);
    expect(m.read32(0x9000 + 4092)).toBe(9);
    expect(m.isFilled(0x9000, 64 * 3, 0)).toBe(true);
    m.zeroFrame(5);
    expect(m.isFilled(0x5000, 4096, 0)).toBe(true);
    m.writeBytes(0x20000 + 60, new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0])); // zeros skipped, one line backed
    expect(m.read32(0x20000 + 64)).toBe(1);
  });

  it("counts accesses", () => {
    const m = new PhysMem();
    m.write32(0, 1);
    m.read32(0);
    m.read32(4);
    expect(m.counters.memWrites).toBe(1);
    expect(m.counters.memReads).toBe(2);
  });

  it("rejects addresses beyond MAXPHYADDR and misaligned accesses with typed errors", () => {
    const m = new PhysMem({ maxPhysAddrBits: 36 });
    expect(() => m.read32(2 ** 36)).toThrow(PagelabError);
    expect(() => m.write32(2 ** 36, 1)).toThrow(/beyond MAXPHYADDR \(36 bits\)/);
    expect(() => m.read32(2)).toThrow(/not 4-byte aligned/);
    m.write32(4, 7); // warm the chunk cache: the fast path must still refuse a fractional address
    expect(() => m.read32(4.5)).toThrow(/not a whole number/);
    expect(() => m.write32(8.25, 1)).toThrow(PagelabError);
    expect(() => m.peek32(-4)).toThrow(PagelabError);
    expect(() => new PhysMem({ maxPhysAddrBits: 60 })).toThrow(/32 to 52/);
  });

  it("zeroes frames and bulk-copies across chunk boundaries", () => {
    const m = new PhysMem();
    const edge = 0x200000 - 8;
    m.fill(edge, 16, 0xab);
    expect(m.read32(edge)).toBe(0xabababab);
    expect(m.read32(0x200004)).toBe(0xabababab);
    m.copy(0x400000, edge, 16);
    expect([...m.readBytes(0x400000, 16)].every((b) => b === 0xab)).toBe(true);
    m.zeroFrame(0x400);
    expect(m.read32(0x400000)).toBe(0);
    expect(m.backedChunks()).toEqual([0, 0x200000, 0x400000]);
  });
  it("#2/#11: a memset over whole 2 MiB chunks backs nothing, and a store into such a chunk backs only it", () => {
    const m = new PhysMem({ maxPhysAddrBits: 52 });
    const base = 2 ** 44 - 0x1000; // a 16 TiB boundary inside the range, unaligned start and end
    const len = 512 * 2 ** 20 + 0x2000; // 512 MiB: a bitmap of 2^32 frames
    m.fill(base, len, 0xff);
    expect(m.backedBytes).toBe(2 * 4096); // the two partial pages at the edges, not 512 MiB
    expect(m.read32(base)).toBe(0xffffffff);
    expect(m.read32(base + len - 4)).toBe(0xffffffff);
    expect(m.read32(base + len)).toBe(0);
    expect(m.read32(base - 4)).toBe(0);
    expect(m.read32(2 ** 44 + 0x123454)).toBe(0xffffffff);
    expect(m.isFilled(base, len, 0xff)).toBe(true);
    expect(m.readBytes(2 ** 44 + 0x1ffffc, 8)).toEqual(new Uint8Array(8).fill(0xff));
    m.write32(2 ** 44 + 0x400000, 0x1234); // materializes one chunk, keeping its other words
    expect(m.backedBytes).toBe(2 * 4096 + 2 ** 21);
    expect(m.read32(2 ** 44 + 0x400000)).toBe(0x1234);
    expect(m.read32(2 ** 44 + 0x400004)).toBe(0xffffffff);
    expect(m.isFilled(base, len, 0xff)).toBe(false);
    m.zeroFrame((2 ** 44 + 0x800000) / 4096); // a zeroed page inside a uniform chunk
    expect(m.read32(2 ** 44 + 0x800000)).toBe(0);
    expect(m.read32(2 ** 44 + 0x801000)).toBe(0xffffffff);
    m.fill(base, len, 0); // memset to zero: chunks are dropped, partial pages zeroed
    expect(m.backedBytes).toBe(2 * 4096);
    expect(m.isFilled(base, len, 0)).toBe(true);
    expect(m.read32(2 ** 44 + 0x400000)).toBe(0);
    // The fast path must not keep a chunk that a fill replaced.
    m.write32(0x200000, 7);
    expect(m.read32(0x200000)).toBe(7);
    m.fill(0x200000, 0x200000, 0x11);
    expect(m.read32(0x200000)).toBe(0x11111111);
    m.write32(0x200004, 5);
    expect(m.read32(0x200000)).toBe(0x11111111);
    expect(m.read32(0x200004)).toBe(5);
  });
});

describe("isFilled and readWords agree with word-by-word loads on every kind of backing", () => {
  it("random stores, fills and ranges (untouched, lines, whole pages, dense and uniform chunks)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("store"),
              word: fc.nat(2 * 1024 * 1024 - 1),
              value: fc.constantFrom(0, 0xa5a5a5a5, 7),
            }),
            fc.record({
              kind: fc.constant("fill"),
              word: fc.nat(2 * 1024 * 1024 - 1),
              words: fc.nat(600_000),
              byte: fc.constantFrom(0, 0xa5),
            }),
          ),
          { maxLength: 40 },
        ),
        fc.array(
          fc.record({
            word: fc.nat(2 * 1024 * 1024 - 1),
            words: fc.nat(700_000),
            byte: fc.constantFrom(0, 0xa5),
          }),
          {
            minLength: 1,
            maxLength: 20,
          },
        ),
        (ops, queries) => {
          const m = new PhysMem({ maxPhysAddrBits: 36 });
          const base = 0x40000000; // chunks 512.. of the second GiB: four chunks in play
          for (const op of ops) {
            if (op.kind === "store") m.write32(base + op.word * 4, op.value);
            else {
              const words = Math.min(op.words, 2 * 1024 * 1024 - op.word);
              m.fill(base + op.word * 4, words * 4, op.byte);
            }
          }
          for (const q of queries) {
            const words = Math.min(q.words, 2 * 1024 * 1024 - q.word);
            const w = (q.byte * 0x01010101) >>> 0;
            let want = true;
            for (let i = 0; i < words && want; i++) if (m.peek32(base + (q.word + i) * 4) !== w) want = false;
            expect(m.isFilled(base + q.word * 4, words * 4, q.byte)).toBe(want);
            const got = new Uint32Array(words);
            m.readWords(base + q.word * 4, got, 0, words);
            let same = true;
            for (let i = 0; i < words && same; i++)
              if (got[i] !== m.peek32(base + (q.word + i) * 4)) same = false;
            expect(same).toBe(true);
          }
        },
      ),
      { numRuns: 60, seed: 13 },
    );
  });
});

describe("a line page the program keeps coming back to", () => {
  it("is made whole after HOT_LINE_LOOKUPS directory lookups of its lines, keeping its data, and served from the page cache after", () => {
    const m = new PhysMem({ denseBudget: 0 });
    const head = 0x40000000; // a list head: two lines of one page
    const rec = (i: number) => 0x40200000 + (i % 8) * 4096; // records: one line in each of 8 pages
    m.write32(head, 1);
    m.write32(head + 64, 2);
    for (let i = 0; i < 8; i++) m.write32(rec(i) + 4, i + 1);
    const lines = m.backedBytes;
    expect(lines).toBe(10 * 64);
    let lookups = 0;
    // Alternate head and records, all lines (not page-cached): each access looks its line up.
    while (m.backedBytes === lines && lookups < 200) {
      expect(m.read32(head)).toBe(1);
      expect(m.read32(rec(lookups) + 4)).toBe((lookups % 8) + 1);
      lookups++;
    }
    // The head's page: its 2 stores and the loads looked it up; a record page 1 + lookups / 8 times.
    expect(lookups).toBe(HOT_LINE_LOOKUPS - 2);
    expect(m.backedBytes).toBe(lines - 2 * 64 + 4096); // made whole (its lines, the chunk's only ones, dropped)
    const reads = m.counters.memReads;
    const n = 4 * (HOT_LINE_LOOKUPS - 3); // a record page gets n / 8 more lookups: still fewer than the threshold
    for (let i = 0; i < n; i++) {
      m.write32(head + 64, i);
      expect(m.read32(rec(i) + 4)).toBe((i % 8) + 1);
      expect(m.read32(head)).toBe(1);
    }
    expect(m.read32(head + 64)).toBe(n - 1);
    expect(m.counters.memReads - reads).toBe(2 * n + 1);
    expect(m.backedBytes).toBe(lines - 2 * 64 + 4096); // the record pages stay lines
    expect(m.isFilled(head + 128, 4096 - 128, 0)).toBe(true);
  });
});

describe("the RAM caches never serve a replaced backing", () => {
  it("random stores, fills and loads interleaved agree with a flat model (promotions, uniform chunks, recycled pages)", () => {
    const WORDS = 4 * 512 * 1024; // four 2 MiB chunks
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant("store"), word: fc.nat(WORDS - 1), value: fc.nat(0xffffffff) }),
            fc.record({ kind: fc.constant("burst"), word: fc.nat(WORDS - 1), n: fc.nat(200) }),
            fc.record({
              kind: fc.constant("fill"),
              word: fc.nat(WORDS - 1),
              words: fc.nat(1_200_000),
              byte: fc.constantFrom(0, 0x5a),
            }),
            fc.record({ kind: fc.constant("load"), word: fc.nat(WORDS - 1) }),
          ),
          { maxLength: 80 },
        ),
        (ops) => {
          const m = new PhysMem({ maxPhysAddrBits: 36, denseBudget: 2 * 1024 * 1024 });
          const model = new Uint32Array(WORDS);
          const base = 0x40000000;
          let seed = 1;
          for (const op of ops) {
            if (op.kind === "store") {
              m.write32(base + op.word * 4, op.value);
              model[op.word] = op.value;
            } else if (op.kind === "burst") {
              // many pages of one chunk touched: promotes it (and recycles its sparse pages)
              for (let i = 0; i < op.n; i++) {
                seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
                const w = (op.word & ~(512 * 1024 - 1)) + (seed % (512 * 1024));
                m.write32(base + w * 4, seed);
                model[w] = seed;
              }
            } else if (op.kind === "fill") {
              const words = Math.min(op.words, WORDS - op.word);
              m.fill(base + op.word * 4, words * 4, op.byte);
              model.fill((op.byte * 0x01010101) >>> 0, op.word, op.word + words);
            } else {
              expect(m.read32(base + op.word * 4)).toBe(model[op.word]);
            }
          }
          for (let w = 0; w < WORDS; w += 997) expect(m.read32(base + w * 4)).toBe(model[w]);
        },
      ),
      { numRuns: 60, seed: 21 },
    );
  });
});
