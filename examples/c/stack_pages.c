/*
 * Linked stack pages: a physical memory manager as kernel code, the same algorithm as pagelab's
 * TypeScript `stack-pages` (src/kernel/pmm/stack-pages.ts), access for access.
 *
 * Each stack page is a free frame holding the frame number of the next stack page and up to 511 free
 * frame numbers (u64 each, 4 KiB in all):
 *
 *     head --> +--------------+    +--------------+
 *              | next --------+--> | next = ~0    |
 *              | pfn[0]       |    | pfn[0..510]  |   every page but the top one is full (511)
 *              | ...          |    +--------------+
 *              | pfn[top-1]   |    registers: head (pfn of the top page), top (entries in it)
 *              +--------------+
 *
 * Free pushes into the top page; when it is full, the frame being freed becomes the new top page.
 * Alloc pops from the top page; when it is empty, the page itself is handed out and its successor
 * becomes the top. The stack lives in free frames, reached by physical address: the kernel must be able
 * to reach any frame (a direct map, or a temporary window per access: see PMM_PHYS_TO_VIRT in pmm.h).
 *
 * The standing metadata is an allocation bitmap (1 bit per frame of the usable ranges, widened to 32
 * frames) that catches double and foreign frees.
 *
 *   pagelab:      npx pagelab boot --pmm examples/c/stack_pages.c
 *   your kernel:  clang --target=x86_64-unknown-none -ffreestanding -mno-red-zone -c stack_pages.c
 */
#include <pagelab/pmm.h>

PMM_DESIGN("stack_pages.c",
           "Linked stack pages of 511 free frame numbers each, the pages being free frames themselves "
           "(C): O(1), zero standing overhead but the allocation bitmap, no contiguity.");

#define PER_STACK_PAGE 511
#define NIL ((pmm_pfn_t)-1)

/* Registers: the top stack page (NIL: empty), entries in it, pages, free entries, managed frames. */
static pmm_pfn_t head = NIL;
static uint32_t top;
static uint64_t pages;
static uint64_t entries;
static uint64_t managed;
/* Sums of the managed frame numbers and of their squares (mod 2^64), for the read-only checker. */
static uint64_t managed_sum, managed_sq;

/* The usable ranges (for "is this frame mine"), and the allocation bitmap's regions widened to 32. */
static uint32_t nregions;
static pmm_pfn_t rstart[PMM_MAX_RANGES], rend[PMM_MAX_RANGES];
static uint32_t nbits;
static pmm_pfn_t bstart[PMM_MAX_RANGES], bend[PMM_MAX_RANGES];
static uint64_t bbase[PMM_MAX_RANGES], bframes;
static pmm_paddr_t amap; /* the allocation bitmap: 1 = handed out by pmm_alloc */
static uint32_t colours = 1;
static uint32_t rhint, bhint;

static uint64_t page_round(uint64_t bytes) { return (bytes + PMM_PAGE_SIZE - 1) / PMM_PAGE_SIZE * PMM_PAGE_SIZE; }

/* The bitmap's regions: usable ranges widened to 32 frames, merged where they touch. */
static uint64_t widen(const struct pmm_layout *l, int keep) {
  uint32_t n = 0;
  uint64_t total = 0;
  pmm_pfn_t last_end = 0;
  for (uint32_t i = 0; i < l->nranges; i++) {
    pmm_pfn_t s = l->range[i].start / 32 * 32;
    pmm_pfn_t e = (l->range[i].end + 31) / 32 * 32;
    if (n > 0 && s <= last_end) {
      if (e > last_end) {
        total += e - last_end;
        last_end = e;
        if (keep) bend[n - 1] = e;
      }
      continue;
    }
    if (keep) {
      bstart[n] = s;
      bend[n] = e;
      bbase[n] = total;
    }
    n++;
    last_end = e;
    total += e - s;
  }
  if (keep) nbits = n;
  return total;
}

uint64_t pmm_metadata_bytes(const struct pmm_layout *l) { return page_round(widen(l, 0) / 8); }

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

/* Index of pfn in the allocation bitmap, or -1. */
static int64_t slot(pmm_pfn_t pfn) {
  uint32_t h = bhint;
  if (!(h < nbits && pfn >= bstart[h] && pfn < bend[h])) {
    uint32_t lo = 0, hi = nbits;
    h = nbits;
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (pfn < bstart[mid]) hi = mid;
      else if (pfn >= bend[mid]) lo = mid + 1;
      else {
        h = mid;
        break;
      }
    }
    if (h == nbits) return -1;
    bhint = h;
  }
  return (int64_t)(bbase[h] + (pfn - bstart[h]));
}

static int amap_is_set(pmm_pfn_t pfn) {
  int64_t s = slot(pfn);
  if (s < 0) return 0;
  return (pmm_read32(amap + (uint64_t)(s >> 5) * 4) >> (s & 31)) & 1;
}

static void amap_set(pmm_pfn_t pfn) {
  int64_t s = slot(pfn);
  pmm_paddr_t a = amap + (uint64_t)(s >> 5) * 4;
  pmm_write32(a, pmm_read32(a) | (1u << (s & 31)));
}

static void amap_clear(pmm_pfn_t pfn) {
  int64_t s = slot(pfn);
  pmm_paddr_t a = amap + (uint64_t)(s >> 5) * 4;
  pmm_write32(a, pmm_read32(a) & ~(1u << (s & 31)));
}

int pmm_create(const struct pmm_layout *l, pmm_paddr_t metadata) {
  if (l->nranges > PMM_MAX_RANGES) return pmm_error(PMM_ELAYOUT, "too many usable ranges");
  pmm_pfn_t prev = 0;
  for (uint32_t i = 0; i < l->nranges; i++) {
    if (l->range[i].end <= l->range[i].start) return pmm_error_at(PMM_ELAYOUT, "empty usable range", l->range[i].start);
    if (l->range[i].start < prev) return pmm_error_at(PMM_ELAYOUT, "usable ranges not sorted and disjoint at", l->range[i].start);
    prev = l->range[i].end;
    rstart[i] = l->range[i].start;
    rend[i] = l->range[i].end;
  }
  nregions = l->nranges;
  colours = l->colours ? l->colours : 1;
  head = NIL;
  top = 0;
  pages = entries = managed = managed_sum = managed_sq = 0;
  rhint = bhint = 0;
  bframes = widen(l, 1);
  amap = metadata;
  for (uint64_t off = 0; off < page_round(bframes / 8); off += PMM_PAGE_SIZE) pmm_zero_frame((amap + off) / PMM_PAGE_SIZE);
  return 0;
}

static void push(pmm_pfn_t pfn) {
  if (head == NIL || top == PER_STACK_PAGE) {
    pmm_write64(pfn * PMM_PAGE_SIZE, head); /* the freed frame becomes the new top page */
    head = pfn;
    top = 0;
    pages++;
    return;
  }
  pmm_write64(head * PMM_PAGE_SIZE + 8 + top * 8, pfn);
  top++;
  entries++;
}

static pmm_pfn_t pop(void) {
  pmm_pfn_t h = head;
  if (h == NIL) return NIL;
  if (top == 0) {
    head = pmm_read64(h * PMM_PAGE_SIZE); /* hand out the empty stack page itself */
    top = head == NIL ? 0 : PER_STACK_PAGE;
    pages--;
    return h;
  }
  top--;
  entries--;
  return pmm_read64(h * PMM_PAGE_SIZE + 8 + top * 8);
}

int pmm_add_free(pmm_pfn_t start, uint64_t count) {
  for (pmm_pfn_t p = start; p < start + count;) {
    int r = region_of(p);
    if (r < 0) return pmm_error_at(PMM_EBADFREE, "addFree outside the usable RAM of the layout", p);
    p = rend[r];
  }
  for (uint64_t i = 0; i < count; i++) {
    push(start + i);
    managed_sum += start + i;
    managed_sq += (start + i) * (start + i);
  }
  managed += count;
  return 0;
}

static int fits(pmm_pfn_t pfn, const struct pmm_constraints *c) {
  if (c->max_addr != 0 && (pfn + 1) * PMM_PAGE_SIZE > c->max_addr) return 0;
  if (c->colour >= 0 && pfn % colours != (uint32_t)c->colour) return 0;
  return 1;
}

/* Linear search through the pages for a frame meeting the constraints. */
static pmm_pfn_t pop_matching(const struct pmm_constraints *c) {
  if (head == NIL) return NIL;
  if (top == 0 && fits(head, c)) return pop();
  pmm_pfn_t page = head;
  uint32_t n = top;
  while (page != NIL) {
    for (int i = (int)n - 1; i >= 0; i--) {
      pmm_paddr_t pa = page * PMM_PAGE_SIZE + 8 + (uint64_t)i * 8;
      pmm_pfn_t pfn = pmm_read64(pa);
      if (!fits(pfn, c)) continue;
      /* Fill the hole with the top entry, or with the empty top page itself. */
      pmm_pfn_t filler = pop();
      if (filler != pfn) pmm_write64(pa, filler);
      return pfn;
    }
    /* A full stack page below the top is metadata: not a candidate (it cannot be unlinked cheaply). */
    page = pmm_read64(page * PMM_PAGE_SIZE);
    n = PER_STACK_PAGE;
  }
  return NIL;
}

pmm_pfn_t pmm_alloc(unsigned order, const struct pmm_constraints *c) {
  if (order != 0) return PMM_NO_PFN;
  pmm_pfn_t pfn = (c != 0 && (c->max_addr != 0 || c->colour >= 0)) ? pop_matching(c) : pop();
  if (pfn != NIL) amap_set(pfn);
  return pfn;
}

void pmm_for_each_free(pmm_block_fn *fn, void *ctx) {
  pmm_pfn_t page = head;
  uint32_t n = top;
  while (page != NIL) {
    for (uint32_t i = 0; i < n; i++) fn(pmm_read64(page * PMM_PAGE_SIZE + 8 + i * 8), 1, ctx);
    page = pmm_read64(page * PMM_PAGE_SIZE);
    n = PER_STACK_PAGE;
  }
}

void pmm_for_each_meta_frame(pmm_block_fn *fn, void *ctx) {
  for (pmm_pfn_t page = head; page != NIL; page = pmm_read64(page * PMM_PAGE_SIZE)) fn(page, 1, ctx);
}

static void find_cb(pmm_pfn_t pfn, uint64_t count, void *ctx) {
  pmm_pfn_t *want = ctx;
  if (pfn == want[0]) want[1] = 1;
  (void)count;
}

int pmm_free(pmm_pfn_t pfn, unsigned order) {
  if (order != 0) return pmm_error(PMM_EWRONGORDER, "this design only hands out orders 0..0");
  if (region_of(pfn) < 0) return pmm_error(PMM_EBADFREE, "not in usable RAM");
  if (!amap_is_set(pfn)) {
    pmm_pfn_t want[2] = {pfn, 0};
    pmm_for_each_free(find_cb, want);
    pmm_for_each_meta_frame(find_cb, want);
    return want[1] ? pmm_error(PMM_EDOUBLE, "already free")
                   : pmm_error(PMM_EBADFREE, "never allocated (reserved or metadata)");
  }
  amap_clear(pfn);
  push(pfn);
  return 0;
}

struct tally {
  uint64_t n, sum, sq, bad;
  pmm_pfn_t first_bad;
  int why;
};

static void tally_cb(pmm_pfn_t pfn, uint64_t count, void *ctx) {
  struct tally *t = ctx;
  (void)count;
  t->n++;
  t->sum += pfn;
  t->sq += pfn * pfn;
  if (t->bad) return;
  if (region_of(pfn) < 0) {
    t->bad = 1;
    t->why = 1;
    t->first_bad = pfn;
  } else if (amap_is_set(pfn)) {
    t->bad = 1;
    t->why = 2;
    t->first_bad = pfn;
  }
}

/*
 * The invariants, read-only (a checker may run at any time): every frame on the stack is usable and
 * not marked allocated; the registers agree with the links; and free + allocated frames are exactly the
 * managed frames (same count, same sum, same sum of squares: a frame on the stack twice or lost shows).
 */
int pmm_check(void) {
  struct tally t = {0, 0, 0, 0, 0, 0};
  pmm_for_each_free(tally_cb, &t);
  uint64_t free_entries = t.n;
  pmm_for_each_meta_frame(tally_cb, &t);
  if (t.bad) return pmm_error_at(PMM_EINVARIANT, t.why == 1 ? "frame on the stack is outside usable RAM" : "free frame is marked allocated", t.first_bad);
  if (t.n - free_entries != pages) return pmm_error_at(PMM_EINVARIANT, "stack pages linked differ from the register", t.n - free_entries);
  if (free_entries != entries) return pmm_error_at(PMM_EINVARIANT, "stack entries differ from the register", free_entries);
  if (head != NIL && top > PER_STACK_PAGE) return pmm_error_at(PMM_EINVARIANT, "top out of range", top);
  for (uint32_t r = 0; r < nbits; r++) {
    for (uint64_t s = bbase[r]; s < bbase[r] + (bend[r] - bstart[r]); s += 32) {
      uint32_t w = pmm_read32(amap + (s >> 5) * 4);
      for (uint32_t b = 0; w != 0; b++, w >>= 1) {
        if (!(w & 1)) continue;
        pmm_pfn_t pfn = bstart[r] + (s - bbase[r]) + b;
        t.n++;
        t.sum += pfn;
        t.sq += pfn * pfn;
      }
    }
  }
  if (t.n != managed) return pmm_error_at(PMM_EINVARIANT, "allocated + free frames differ from managed frames", t.n);
  if (t.sum != managed_sum || t.sq != managed_sq)
    return pmm_error(PMM_EINVARIANT, "allocated + free frames are not the managed frames (one is lost, or on the stack twice)");
  return 0;
}

void pmm_stats(struct pmm_stats *out) {
  out->managed_frames = managed;
  out->metadata_bytes = page_round(bframes / 8);
  out->transient_bytes = pages * PMM_PAGE_SIZE;
}

unsigned pmm_max_order(void) { return 0; }
