/*
 * Bitmaps with a summary level and a next-fit hint: a physical memory manager as kernel code, the same
 * algorithm as pagelab's TypeScript `bitmap` (src/kernel/pmm/bitmap.ts), access for access: the same
 * loads and stores of the same metadata words in the same order, the same memsets and memchr_inv-style
 * compares (pmm_fill / pmm_is_filled, counted as bulk bytes, where the TypeScript design calls
 * bulkFill / bulkIsFilled with the same arguments), so a boot gives the same counters and the same
 * frames.
 *
 * Each usable range, widened to 1024-frame (4 MiB) boundaries (ranges that then touch are merged), is a
 * region with its own five arrays, one after the other in the standing metadata:
 *
 *     per region of `span` frames:
 *       used[span/32]      1 bit per frame: 1 = not free (allocated, reserved, padding, metadata)
 *       head[span/32]      1 bit per frame: first frame of an allocated block
 *       managed[span/32]   1 bit per frame: given by pmm_add_free (0 = reserved / padding / metadata)
 *       any[span/1024]     1 bit per used[] word: the word has a free frame     (summary level)
 *       full[span/1024]    1 bit per used[] word: the word is entirely free     (summary level)
 *
 * A summary word (one any[] or full[] word) answers for 32 used[] words: 1024 frames. A map of 0-4 GiB
 * plus 128-130 TiB pays for 6 GiB of bitmap, not 130 TiB: 3 bits per frame plus 2 per 32 frames,
 * 0.0099 % of RAM (104 KiB per GiB).
 *
 * Search for order k (a naturally aligned block of 2^k frames), region by region from the next-fit hint
 * (region, summary word), wrapping once around to the hint's own summary word:
 *   k <= 5:   any[] words are read; for each used[] word they flag, the word is read and tested for an
 *             aligned group of 2^k zero bits;
 *   k 6-10:   a block is 2^(k-5) whole used[] words: an aligned group of 2^(k-5) bits set in one full[]
 *             word (no used[] word is read);
 *   k 11-18:  a block is 2^(k-10) whole summary words: that many consecutive full[] words all ones, at
 *             an aligned position (up to 1 GiB, k = 18).
 * An allocation sets the used bits (and the summary bits of the words it changes) and the head bit.
 *
 * The head and managed bitmaps make every bad free detectable before anything is written: never managed
 * (reserved, metadata), already free, inside a block (no head bit), and wrong order: a block of order k
 * is 2^k allocated managed frames with a head bit on the first only, and it ends where the next frame is
 * free, unmanaged, or another head.
 *
 * Registers (globals): region bases and array addresses, the hint, the free and managed frame counts.
 *
 * Where it differs from the TypeScript design (none of it touches memory or changes a counter):
 *   - an address limit of 0 means "no limit" here (pmm.h: struct pmm_constraints), where the TypeScript
 *     design reads `maxAddr: 0` as "below address 0" and finds nothing;
 *   - the TypeScript design's `wordsScanned` event counter (a host-side statistic, not a metadata access)
 *     is not kept.
 *
 *   pagelab:      npx pagelab boot --pmm examples/c/bitmap.c
 *   your kernel:  clang --target=x86_64-unknown-none -ffreestanding -mno-red-zone -c bitmap.c
 */
#include <pagelab/pmm.h>

PMM_DESIGN("bitmap.c",
           "One bitmap per usable region with a summary level (any-free / all-free per 32 frames) and a "
           "next-fit hint (C): any order up to 1 GiB, 3 bits per frame.");

#define ALL 0xffffffffu
#define NIL ((pmm_pfn_t)-1)
#define REGION_ALIGN 1024 /* frames per summary word */
#define ORDER_1G 18

/* Registers: the regions (usable ranges widened to 1024 frames) and the addresses of their arrays. */
static uint32_t nregions;
static pmm_pfn_t rstart[PMM_MAX_RANGES], rend[PMM_MAX_RANGES];
static pmm_paddr_t used_pa[PMM_MAX_RANGES], head_pa[PMM_MAX_RANGES], mgd_pa[PMM_MAX_RANGES];
static pmm_paddr_t any_pa[PMM_MAX_RANGES], full_pa[PMM_MAX_RANGES];
static uint64_t meta_bytes;
static uint32_t colours = 1;
static uint32_t rhint; /* last region found by region_of */
/* Registers: the next-fit hint (region, summary word), free frames, managed frames. */
static uint32_t hint_r;
static uint64_t hint_q;
static uint64_t nfree;
static uint64_t managed;

static uint64_t page_round(uint64_t bytes) { return (bytes + PMM_PAGE_SIZE - 1) / PMM_PAGE_SIZE * PMM_PAGE_SIZE; }
static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static unsigned ctz32(uint32_t x) { return (unsigned)__builtin_ctz(x); } /* x != 0 */
static unsigned popcount32(uint32_t x) { return (unsigned)__builtin_popcount(x); }

/* Bytes of the five arrays of a region of `span` frames (a multiple of 1024). */
static uint64_t region_bytes(uint64_t span) { return (3 * (span / 32) + 2 * (span / 1024)) * 4; }

/* The regions: usable ranges widened to 1024 frames, merged where they touch. Returns the bitmap bytes. */
static uint64_t widen(const struct pmm_layout *l, int keep) {
  uint32_t n = 0;
  uint64_t bytes = 0;
  pmm_pfn_t s0 = 0, e0 = 0; /* the region being built */
  for (uint32_t i = 0; i < l->nranges; i++) {
    pmm_pfn_t s = l->range[i].start / REGION_ALIGN * REGION_ALIGN;
    pmm_pfn_t e = (l->range[i].end + REGION_ALIGN - 1) / REGION_ALIGN * REGION_ALIGN;
    if (n > 0 && s <= e0) {
      if (e > e0) e0 = e;
    } else {
      if (n > 0) bytes += region_bytes(e0 - s0);
      n++;
      s0 = s;
      e0 = e;
    }
    if (keep) {
      rstart[n - 1] = s0;
      rend[n - 1] = e0;
    }
  }
  if (n > 0) bytes += region_bytes(e0 - s0);
  if (keep) nregions = n;
  return bytes;
}

uint64_t pmm_metadata_bytes(const struct pmm_layout *l) { return page_round(widen(l, 0)); }

/* Index of the region holding pfn, or -1 (no memory access: the region bases are registers). */
static int region_of(pmm_pfn_t pfn) {
  uint32_t h = rhint;
  if (h < nregions && pfn >= rstart[h] && pfn < rend[h]) return (int)h;
  uint32_t lo = 0, hi = nregions;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (pfn < rstart[mid]) hi = mid;
    else if (pfn >= rend[mid]) lo = mid + 1;
    else {
      rhint = mid;
      return (int)mid;
    }
  }
  return -1;
}

int pmm_create(const struct pmm_layout *l, pmm_paddr_t metadata) {
  if (l->nranges > PMM_MAX_RANGES) return pmm_error(PMM_ELAYOUT, "too many usable ranges");
  pmm_pfn_t prev = 0;
  for (uint32_t i = 0; i < l->nranges; i++) {
    if (l->range[i].end <= l->range[i].start) return pmm_error_at(PMM_ELAYOUT, "empty usable range", l->range[i].start);
    if (l->range[i].start < prev) return pmm_error_at(PMM_ELAYOUT, "usable ranges not sorted and disjoint at", l->range[i].start);
    prev = l->range[i].end;
  }
  colours = l->colours ? l->colours : 1;
  widen(l, 1);
  rhint = hint_r = 0;
  hint_q = nfree = managed = 0;
  pmm_paddr_t pa = metadata;
  for (uint32_t r = 0; r < nregions; r++) {
    uint64_t span = rend[r] - rstart[r];
    used_pa[r] = pa;
    head_pa[r] = pa + span / 8;
    mgd_pa[r] = pa + span / 4;
    any_pa[r] = pa + 3 * span / 8;
    full_pa[r] = pa + 3 * span / 8 + span / 256;
    pa += region_bytes(span);
  }
  meta_bytes = page_round(pa - metadata);
  for (uint64_t off = 0; off < meta_bytes; off += PMM_PAGE_SIZE) pmm_zero_frame((metadata + off) / PMM_PAGE_SIZE);
  /* memset(used, 0xff): every frame starts used (reserved) until pmm_add_free says otherwise. */
  for (uint32_t r = 0; r < nregions; r++) pmm_fill(used_pa[r], (rend[r] - rstart[r]) / 8, 0xff);
  return 0;
}

/* Store used word w of region r (it held `old`) and keep the summary bits in step. */
static void write_used(uint32_t r, uint64_t w, uint32_t old, uint32_t val) {
  pmm_write32(used_pa[r] + w * 4, val);
  uint64_t q = w / 32 * 4;
  uint32_t bit = 1u << (w & 31);
  if ((old == ALL) != (val == ALL)) {
    uint32_t a = pmm_read32(any_pa[r] + q);
    pmm_write32(any_pa[r] + q, val == ALL ? a & ~bit : a | bit);
  }
  if ((old == 0) != (val == 0)) {
    uint32_t f = pmm_read32(full_pa[r] + q);
    pmm_write32(full_pa[r] + q, val == 0 ? f | bit : f & ~bit);
  }
}

/*
 * Give [start, start + count) to the allocator. Pass 0 checks every frame (in a region, still used, not
 * yet managed) without writing; pass 1 clears the used bits and sets the managed bits. Whole summary
 * words (1024 frames at a 1024 boundary) are done with memsets, as a kernel frees RAM at boot; the
 * frames at the edges word by word.
 */
int pmm_add_free(pmm_pfn_t start, uint64_t count) {
  pmm_pfn_t end = start + count;
  for (int pass = 0; pass < 2; pass++) {
    for (pmm_pfn_t p = start; p < end;) {
      int r = region_of(p);
      if (r < 0) return pmm_error_at(PMM_EBADFREE, "addFree outside the usable RAM of the layout", p);
      uint64_t s = p - rstart[r];
      uint64_t q = (s & 1023) == 0 ? (min64(end, rend[r]) - p) / 1024 : 0;
      if (q > 0) {
        uint64_t qi = s / 1024;
        if (pass == 0) {
          /* All used (their any[] words are zero) and none managed. */
          if (!pmm_is_filled(any_pa[r] + qi * 4, q * 4, 0) || !pmm_is_filled(mgd_pa[r] + qi * 128, q * 128, 0))
            return pmm_error_at(PMM_EBADFREE, "addFree of a frame the allocator already manages", p);
        } else {
          pmm_fill(mgd_pa[r] + qi * 128, q * 128, 0xff);
          pmm_fill(used_pa[r] + qi * 128, q * 128, 0);
          pmm_fill(any_pa[r] + qi * 4, q * 4, 0xff);
          pmm_fill(full_pa[r] + qi * 4, q * 4, 0xff);
        }
        p += q * 1024;
        continue;
      }
      uint64_t w = s / 32;
      uint64_t n = min64(32 - (s & 31), end - p);
      uint32_t m = n == 32 ? ALL : ((1u << n) - 1) << (s & 31);
      uint32_t u = pmm_read32(used_pa[r] + w * 4);
      uint32_t g = pmm_read32(mgd_pa[r] + w * 4);
      if (pass == 0 && ((u & m) != m || (g & m) != 0))
        return pmm_error_at(PMM_EBADFREE, "addFree of a frame the allocator already manages", p);
      if (pass == 1) {
        pmm_write32(mgd_pa[r] + w * 4, g | m);
        write_used(r, w, u, u & ~m);
      }
      p += n;
    }
  }
  managed += count;
  nfree += count;
  return 0;
}

/* Does the block [pfn, pfn + 2^k) satisfy the hard constraints (address limit, colour)? */
static int fits(pmm_pfn_t pfn, unsigned k, const struct pmm_constraints *c) {
  if (c == 0) return 1;
  if (c->max_addr != 0 && (pfn + (1ull << k)) * PMM_PAGE_SIZE > c->max_addr) return 0;
  if (c->colour >= 0 && pfn % colours != (uint32_t)c->colour) return 0;
  return 1;
}

/* The used word search_small read where it found the block, handed to take (read once an allocation). */
static pmm_paddr_t seen_used_pa = ~(pmm_paddr_t)0;
static uint32_t seen_used;

/* Orders 0..5 in summary words [q0, q1) of region r: an aligned zero group inside one used word. */
static pmm_pfn_t search_small(uint32_t r, unsigned k, uint64_t q0, uint64_t q1, const struct pmm_constraints *c) {
  pmm_pfn_t base = rstart[r];
  unsigned g = 1u << k;
  uint32_t mask = g == 32 ? ALL : (1u << g) - 1;
  for (uint64_t q = q0; q < q1; q++) {
    /* Summary words are in address order: past the address limit, nothing further fits. */
    if (c != 0 && c->max_addr != 0 && (base + q * 1024) * PMM_PAGE_SIZE >= c->max_addr) return NIL;
    uint32_t s = pmm_read32(any_pa[r] + q * 4);
    while (s != 0) {
      uint64_t w = q * 32 + ctz32(s);
      s &= s - 1;
      seen_used_pa = used_pa[r] + w * 4;
      seen_used = pmm_read32(seen_used_pa);
      uint32_t zeros = ~seen_used; /* 1 = free */
      pmm_pfn_t pb = base + w * 32;
      if (k == 0 && c == 0) return pb + ctz32(zeros);
      for (unsigned off = 0; off < 32; off += g)
        if (((zeros >> off) & mask) == mask && fits(pb + off, k, c)) return pb + off;
    }
  }
  return NIL;
}

/* Orders 6..10: an aligned group of 2^(k-5) all-free used words, seen as bits of one full[] word. */
static pmm_pfn_t search_mid(uint32_t r, unsigned k, uint64_t q0, uint64_t q1, const struct pmm_constraints *c) {
  pmm_pfn_t base = rstart[r];
  unsigned g = 1u << (k - 5);
  uint32_t mask = g == 32 ? ALL : (1u << g) - 1;
  for (uint64_t q = q0; q < q1; q++) {
    uint32_t s = pmm_read32(full_pa[r] + q * 4);
    if (s == 0) continue;
    for (unsigned off = 0; off < 32; off += g) {
      pmm_pfn_t pfn = base + (q * 32 + off) * 32;
      if (((s >> off) & mask) == mask && fits(pfn, k, c)) return pfn;
    }
  }
  return NIL;
}

/* Orders 11..18: 2^(k-10) consecutive all-ones full[] words at an aligned position. */
static pmm_pfn_t search_big(uint32_t r, unsigned k, uint64_t q0, uint64_t q1, const struct pmm_constraints *c) {
  pmm_pfn_t base = rstart[r];
  uint64_t qn = (rend[r] - base) / 1024;
  uint64_t n = 1ull << (k - 10);
  uint64_t q = q0 + (n - (base / 1024 + q0) % n) % n; /* first summary word of an aligned block */
  for (; q < q1 && q + n <= qn; q += n) {
    int ok = 1;
    for (uint64_t i = 0; i < n && ok; i++) ok = pmm_read32(full_pa[r] + (q + i) * 4) == ALL;
    if (ok && fits(base + q * 1024, k, c)) return base + q * 1024;
  }
  return NIL;
}

/* Set n whole used words from w (n >= 2, aligned) to val (ALL or 0), and their summary bits word-wise. */
static void fill_words(uint32_t r, uint64_t w, uint64_t n, uint32_t val) {
  for (uint64_t i = 0; i < n; i++) pmm_write32(used_pa[r] + (w + i) * 4, val);
  for (uint64_t q = w / 32; q <= (w + n - 1) / 32; q++) {
    uint64_t lo = (w > q * 32 ? w : q * 32) - q * 32;
    uint64_t hi = min64(w + n, q * 32 + 32) - q * 32;
    uint32_t m = hi - lo == 32 ? ALL : ((1u << (hi - lo)) - 1) << lo;
    uint32_t a = pmm_read32(any_pa[r] + q * 4);
    uint32_t f = pmm_read32(full_pa[r] + q * 4);
    pmm_write32(any_pa[r] + q * 4, val == ALL ? a & ~m : a | m);
    pmm_write32(full_pa[r] + q * 4, val == ALL ? f & ~m : f | m);
  }
}

/* Mark [pfn, pfn + 2^k) allocated, with its head bit. */
static void take(uint32_t r, pmm_pfn_t pfn, unsigned k) {
  uint64_t s = pfn - rstart[r];
  uint64_t w = s / 32;
  if (k <= 5) {
    uint32_t m = (k == 5 ? ALL : (1u << (1u << k)) - 1) << (s & 31);
    pmm_paddr_t upa = used_pa[r] + w * 4;
    uint32_t u = upa == seen_used_pa ? seen_used : pmm_read32(upa);
    write_used(r, w, u, u | m);
  } else {
    fill_words(r, w, 1ull << (k - 5), ALL);
  }
  pmm_paddr_t h = head_pa[r] + w * 4;
  pmm_write32(h, pmm_read32(h) | (1u << (s & 31)));
  nfree -= 1ull << k;
  seen_used_pa = ~(pmm_paddr_t)0;
}

/*
 * Search every region once, starting at the hint's summary word and wrapping around to it, so a full
 * pass reads each summary word at most once (the hint's own word twice). The hint moves to the
 * summary word of the block found.
 */
pmm_pfn_t pmm_alloc(unsigned order, const struct pmm_constraints *c) {
  unsigned k = order;
  if (k > ORDER_1G || nregions == 0) return PMM_NO_PFN;
  uint32_t nr = nregions;
  seen_used_pa = ~(pmm_paddr_t)0;
  for (uint32_t t = 0; t <= nr; t++) {
    uint32_t r = (hint_r + t) % nr;
    uint64_t q0 = t == 0 ? hint_q : 0;
    uint64_t qn = (rend[r] - rstart[r]) / 1024;
    uint64_t q1 = t == nr ? min64(hint_q + 1, qn) : qn;
    pmm_pfn_t pfn = k <= 5    ? search_small(r, k, q0, q1, c)
                    : k <= 10 ? search_mid(r, k, q0, q1, c)
                              : search_big(r, k, q0, q1, c);
    if (pfn != NIL) {
      hint_r = r;
      hint_q = (pfn - rstart[r]) / 1024;
      take(r, pfn, k);
      return pfn;
    }
  }
  return PMM_NO_PFN;
}

/*
 * The block at frame s of region r must be exactly 2^order frames: all allocated tails, then a non-tail.
 * The words of the head's word w0 were read by the caller (u0, g0, h0); others are read here.
 */
static int check_extent(uint32_t r, uint64_t s, unsigned order, uint64_t w0, uint32_t u0, uint32_t g0,
                        uint32_t h0) {
  uint64_t n = 1ull << order;
  uint64_t span = rend[r] - rstart[r];
  if (s + n > span) return pmm_error(PMM_EWRONGORDER, "the block would run past its region");
  for (uint64_t p = s; p < s + n; p += 32) {
    uint64_t w = p / 32;
    uint64_t cnt = min64(n, 32);
    uint32_t m = (cnt == 32 ? ALL : (1u << cnt) - 1) << (p & 31);
    int known = w == w0;
    uint32_t u = known ? u0 : pmm_read32(used_pa[r] + w * 4);
    uint32_t g = known ? g0 : pmm_read32(mgd_pa[r] + w * 4);
    uint32_t h = known ? h0 : pmm_read32(head_pa[r] + w * 4);
    uint32_t want_head = p == s ? 1u << (s & 31) : 0;
    if ((u & m) != m || (g & m) != m || (h & m) != want_head)
      return pmm_error(PMM_EWRONGORDER, "the allocated block at this frame is smaller");
  }
  uint64_t e = s + n;
  if (e < span) {
    uint64_t w = e / 32;
    uint32_t bit = 1u << (e & 31);
    int tail = w == w0 ? (u0 & bit) != 0 && (g0 & bit) != 0 && (h0 & bit) == 0
                       : (pmm_read32(used_pa[r] + w * 4) & bit) != 0 && (pmm_read32(mgd_pa[r] + w * 4) & bit) != 0 &&
                             (pmm_read32(head_pa[r] + w * 4) & bit) == 0;
    if (tail) return pmm_error(PMM_EWRONGORDER, "the allocated block at this frame is larger");
  }
  return 0;
}

int pmm_free(pmm_pfn_t pfn, unsigned order) {
  if (order > ORDER_1G) return pmm_error(PMM_EWRONGORDER, "this design only hands out orders 0..18");
  if (pfn % (1ull << order) != 0) return pmm_error(PMM_EMISALIGNED, "not aligned to 2^order frames");
  int r = region_of(pfn);
  if (r < 0) return pmm_error(PMM_EBADFREE, "not in usable RAM");
  uint64_t s = pfn - rstart[r];
  uint64_t w = s / 32;
  uint32_t bit = 1u << (s & 31);
  /* The frame's three words, read once and kept for the checks and the update. */
  uint32_t g = pmm_read32(mgd_pa[r] + w * 4);
  if ((g & bit) == 0) return pmm_error(PMM_EBADFREE, "never given to the allocator (reserved or metadata)");
  uint32_t u = pmm_read32(used_pa[r] + w * 4);
  if ((u & bit) == 0) return pmm_error(PMM_EDOUBLE, "already free");
  uint32_t h = pmm_read32(head_pa[r] + w * 4);
  if ((h & bit) == 0) return pmm_error(PMM_EBADFREE, "inside an allocated block, not its first frame");
  int rc = check_extent((uint32_t)r, s, order, w, u, g, h);
  if (rc != 0) return rc;
  if (order <= 5) {
    uint32_t m = (order == 5 ? ALL : (1u << (1u << order)) - 1) << (s & 31);
    write_used((uint32_t)r, w, u, u & ~m);
  } else {
    fill_words((uint32_t)r, w, 1ull << (order - 5), 0); /* the head word is not among them */
  }
  pmm_write32(head_pa[r] + w * 4, h & ~bit);
  nfree += 1ull << order;
  return 0;
}

/* Free runs in address order; a group of 1024 frames that its summaries say is all free or all used
 * costs one or two reads. */
void pmm_for_each_free(pmm_block_fn *fn, void *ctx) {
  for (uint32_t r = 0; r < nregions; r++) {
    pmm_pfn_t base = rstart[r];
    uint64_t words = (rend[r] - base) / 32;
    pmm_pfn_t run = NIL;
    for (uint64_t w = 0; w < words;) {
      if ((w & 31) == 0 && w + 32 <= words) {
        if (pmm_read32(full_pa[r] + w / 8) == ALL) {
          if (run == NIL) run = base + w * 32;
          w += 32;
          continue;
        }
        if (pmm_read32(any_pa[r] + w / 8) == 0) {
          if (run != NIL) fn(run, base + w * 32 - run, ctx);
          run = NIL;
          w += 32;
          continue;
        }
      }
      uint32_t u = pmm_read32(used_pa[r] + w * 4);
      if (!(u == 0 && run != NIL) && !(u == ALL && run == NIL)) {
        for (unsigned b = 0; b < 32; b++) {
          int used = (u >> b) & 1;
          pmm_pfn_t p = base + w * 32 + b;
          if (!used && run == NIL) run = p;
          else if (used && run != NIL) {
            fn(run, p - run, ctx);
            run = NIL;
          }
        }
      }
      w++;
    }
    if (run != NIL) fn(run, rend[r] - run, ctx);
  }
}

void pmm_for_each_meta_frame(pmm_block_fn *fn, void *ctx) {
  (void)fn; /* no transient metadata: everything is in the standing bitmaps */
  (void)ctx;
}

/* The allocated block being followed by pmm_check: its head (NIL: none) and length so far. */
struct block_walk {
  pmm_pfn_t head;
  uint64_t len;
  uint64_t allocated;
};

static int close_block(struct block_walk *b) {
  if (b->head == NIL) return 0;
  if ((b->len & (b->len - 1)) != 0 || b->head % b->len != 0)
    return pmm_error_at(PMM_EINVARIANT, "allocated block is not a naturally aligned power of two at", b->head);
  b->allocated += b->len;
  b->head = NIL;
  return 0;
}

/*
 * The invariants, reading each metadata word once: summaries agree with the used words, free frames
 * are managed, head bits sit on allocated frames, every allocated block is a naturally aligned power
 * of two, and the counts match the registers. A group of 32 words (1024 frames) that its summaries
 * say is all free or all used is checked with memchr_inv-style bulk compares; other words are read
 * one by one and examined bit by bit only where a block starts or ends inside them.
 */
/* Groups (1024 frames each) the check compares at once when they are wholly free: 4 GiB of RAM. */
#define CHECK_BATCH 1024

int pmm_check(void) {
  uint64_t nfree_seen = 0, mgd = 0;
  struct block_walk b = {NIL, 0, 0};
  int rc;
  for (uint32_t r = 0; r < nregions; r++) {
    pmm_pfn_t base = rstart[r];
    uint64_t groups = (rend[r] - base) / 1024;
    for (uint64_t q = 0; q < groups; q++) {
      /* A batch of wholly free groups (4 GiB) in five bulk compares; any difference: group by group. */
      uint64_t k = groups - q < CHECK_BATCH ? groups - q : CHECK_BATCH;
      if (q % CHECK_BATCH == 0 && k > 1 && pmm_is_filled(any_pa[r] + q * 4, k * 4, 0xff) &&
          pmm_is_filled(full_pa[r] + q * 4, k * 4, 0xff) && pmm_is_filled(used_pa[r] + q * 128, k * 128, 0) &&
          pmm_is_filled(head_pa[r] + q * 128, k * 128, 0) && pmm_is_filled(mgd_pa[r] + q * 128, k * 128, 0xff)) {
        if ((rc = close_block(&b)) != 0) return rc;
        nfree_seen += 1024 * k;
        mgd += 1024 * k;
        q += k - 1;
        continue;
      }
      uint32_t any = pmm_read32(any_pa[r] + q * 4);
      uint32_t full = pmm_read32(full_pa[r] + q * 4);
      uint64_t at = q * 128;
      if (any == ALL && full == ALL && pmm_is_filled(used_pa[r] + at, 128, 0) &&
          pmm_is_filled(head_pa[r] + at, 128, 0) && pmm_is_filled(mgd_pa[r] + at, 128, 0xff)) {
        if ((rc = close_block(&b)) != 0) return rc;
        nfree_seen += 1024;
        mgd += 1024;
        continue;
      }
      if (any == 0 && full == 0 && pmm_is_filled(used_pa[r] + at, 128, 0xff) &&
          pmm_is_filled(head_pa[r] + at, 128, 0)) {
        if (pmm_is_filled(mgd_pa[r] + at, 128, 0)) {
          if ((rc = close_block(&b)) != 0) return rc;
          continue;
        }
        if (b.head != NIL && pmm_is_filled(mgd_pa[r] + at, 128, 0xff)) {
          b.len += 1024;
          mgd += 1024;
          continue;
        }
      }
      for (unsigned j = 0; j < 32; j++) {
        uint64_t w = q * 32 + j;
        uint32_t u = pmm_read32(used_pa[r] + w * 4);
        uint32_t h = pmm_read32(head_pa[r] + w * 4);
        uint32_t g = pmm_read32(mgd_pa[r] + w * 4);
        if ((~g & ~u) != 0) return pmm_error_at(PMM_EINVARIANT, "unmanaged frames marked free in the word of frame", base + w * 32);
        if ((h & ~(u & g)) != 0)
          return pmm_error_at(PMM_EINVARIANT, "head bit on a free or unmanaged frame in the word of frame", base + w * 32);
        nfree_seen += popcount32(~u);
        mgd += popcount32(g);
        if (((any >> j) & 1) != (u != ALL)) return pmm_error_at(PMM_EINVARIANT, "summary any[] wrong for the word of frame", base + w * 32);
        if (((full >> j) & 1) != (u == 0)) return pmm_error_at(PMM_EINVARIANT, "summary full[] wrong for the word of frame", base + w * 32);
        uint32_t tails = u & g;
        if (h == 0 && tails == 0) {
          if ((rc = close_block(&b)) != 0) return rc;
          continue;
        }
        if (h == 0 && tails == ALL && b.head != NIL) {
          b.len += 32;
          continue;
        }
        for (unsigned bit = 0; bit < 32; bit++) {
          pmm_pfn_t p = base + w * 32 + bit;
          int is_head = (h >> bit) & 1;
          int is_tail = !is_head && ((u >> bit) & 1) && ((g >> bit) & 1);
          if (is_head) {
            if ((rc = close_block(&b)) != 0) return rc;
            b.head = p;
            b.len = 1;
          } else if (is_tail) {
            if (b.head == NIL) return pmm_error_at(PMM_EINVARIANT, "frame is allocated but no block head precedes it", p);
            b.len++;
          } else if ((rc = close_block(&b)) != 0) {
            return rc;
          }
        }
      }
    }
    if ((rc = close_block(&b)) != 0) return rc;
  }
  if (nfree_seen != nfree)
    return pmm_error_at(PMM_EINVARIANT, "free frames in the bitmaps differ from the register", nfree_seen);
  if (mgd != managed) return pmm_error_at(PMM_EINVARIANT, "managed bits differ from the register", mgd);
  if (nfree_seen + b.allocated != mgd)
    return pmm_error_at(PMM_EINVARIANT, "free + allocated frames differ from managed frames", nfree_seen + b.allocated);
  return 0;
}

void pmm_stats(struct pmm_stats *out) {
  out->managed_frames = managed;
  out->metadata_bytes = meta_bytes;
  out->transient_bytes = 0;
}

unsigned pmm_max_order(void) { return ORDER_1G; }
