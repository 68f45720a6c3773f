/*
 * C twin of four pagelab PMM designs, for the ratio printed by bench/pmm.bench.ts:
 *   - "stack-unchecked": src/kernel/pmm/stack.ts with checked: false (free-page stack in a growable
 *     region, extended with the frame being freed, u64 entries as two 32-bit accesses);
 *   - "stack-pages-unchecked": src/kernel/pmm/stack-pages.ts with checked: false (linked stack pages of
 *     511 frame numbers, the pages being free frames themselves);
 *   - "freelist-unchecked": src/kernel/pmm/freelist.ts with checked: false (xv6's intrusive list: the
 *     next frame number in the free frame's first 8 bytes);
 *   - "buddy" / "buddy-nopcp": src/kernel/pmm/buddy.ts with 16-byte records, one migrate type, one CPU,
 *     per-CPU lists for orders 0..3 (batch 63, high 6 batches) or none.
 * Same algorithms, same metadata layout, same simulated RAM model as src/machine/phys-mem.ts (2 MiB
 * chunks behind a directory, allocated on the first non-zero store; every 32-bit access bounds-checked,
 * alignment-checked and counted), one region [start, end) with the metadata placed at its top as
 * src/kernel/pmm/setup.ts does. So the checksums of the frames returned must equal the TypeScript ones.
 *
 * Usage: pmm_ref TRACE.bin TRACE_NAME START_PFN END_PFN   (prints one JSON line per design)
 * Trace file: i32 n, i32 slots, i32 pairs, then n pairs (op, slot): op >= 0 allocates that order into
 * slot, op = -1 frees the block in slot.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NIL 0xffffffffu
#define MAX_ORDER 10
#define NR_ORDERS 11
#define PCP_ORDERS 4
#define BATCH 63
#define LIMIT (1ull << 52)
#define MAXCHUNKS (1u << 16) /* 128 GiB of simulated RAM */

/* ---- simulated RAM -------------------------------------------------------------------------------- */
static uint32_t *chunks[MAXCHUNKS];
static uint64_t mem_reads, mem_writes;

static void bad(uint64_t pa) {
  fprintf(stderr, "bad access at 0x%llx\n", (unsigned long long)pa);
  exit(2);
}
static inline uint32_t rd(uint64_t pa) {
  if ((pa & 3) || pa >= LIMIT || (pa >> 21) >= MAXCHUNKS) bad(pa);
  mem_reads++;
  uint32_t *c = chunks[pa >> 21];
  return c ? c[(pa & 0x1fffff) >> 2] : 0;
}
static inline void wr(uint64_t pa, uint32_t v) {
  if ((pa & 3) || pa >= LIMIT || (pa >> 21) >= MAXCHUNKS) bad(pa);
  mem_writes++;
  uint32_t *c = chunks[pa >> 21];
  if (!c) {
    if (v == 0) return;
    c = chunks[pa >> 21] = calloc(1u << 19, 4);
  }
  c[(pa & 0x1fffff) >> 2] = v;
}
static void zero_frame(uint64_t pfn) {
  uint32_t *c = chunks[(pfn * 4096) >> 21];
  if (c) memset(c + (((pfn * 4096) & 0x1fffff) >> 2), 0, 4096);
}
static void mem_reset(void) {
  for (unsigned i = 0; i < MAXCHUNKS; i++) free(chunks[i]), chunks[i] = NULL;
}

static uint64_t RS, RE; /* the one usable region, in frames */

/* The checks of an order-0 design's unchecked free: order 0, a frame of the region. */
static inline void check_order0(int64_t pfn, int order) {
  if (order != 0 || pfn < (int64_t)RS || pfn >= (int64_t)RE) bad((uint64_t)pfn);
}

/* Boot an order-0 design: fresh RAM, then every frame of the region pushed in order. */
static void push_all(void (*push)(uint64_t)) {
  mem_reset();
  for (uint64_t p = RS; p < RE; p++) push(p);
}

/* ---- design 1: free-page stack in a growable region (unchecked) ----------------------------------- */
static uint64_t *rframes; /* the region's backing frames: stands in for page tables, as in sim-region.ts */
static uint64_t mapped, sn;

static inline uint32_t reg_rd(uint64_t off) { return rd(rframes[off >> 12] * 4096 + (off & 4095)); }
static inline void reg_wr(uint64_t off, uint32_t v) { wr(rframes[off >> 12] * 4096 + (off & 4095), v); }

static void stack_push(uint64_t pfn) {
  uint64_t off = sn * 8;
  if (off == mapped) {
    rframes[mapped >> 12] = pfn;
    mapped += 4096;
    return;
  }
  reg_wr(off, (uint32_t)pfn);
  reg_wr(off + 4, (uint32_t)(pfn >> 32));
  sn++;
}
static int64_t stack_alloc(int order) {
  if (order != 0) return -1;
  uint64_t pages = mapped >> 12;
  if (pages == 0) return -1;
  if (sn == (pages - 1) * 512) {
    mapped -= 4096;
    return (int64_t)rframes[pages - 1];
  }
  sn--;
  return (int64_t)(((uint64_t)reg_rd(sn * 8 + 4) << 32) | reg_rd(sn * 8));
}
static void stack_free(int64_t pfn, int order) {
  check_order0(pfn, order);
  stack_push((uint64_t)pfn);
}
static void stack_boot(void) {
  free(rframes);
  rframes = calloc((RE - RS) / 512 + 2, 8);
  mapped = sn = 0;
  push_all(stack_push);
}

/* ---- design 2: linked stack pages (unchecked) ----------------------------------------------------- */
#define PER_STACK_PAGE 511
static int64_t sp_head = -1;
static uint64_t sp_top;

static void sp_push(uint64_t pfn) {
  if (sp_head < 0 || sp_top == PER_STACK_PAGE) { /* the freed frame becomes the new top page */
    wr(pfn * 4096, (uint32_t)sp_head);
    wr(pfn * 4096 + 4, (uint32_t)((uint64_t)sp_head >> 32));
    sp_head = (int64_t)pfn;
    sp_top = 0;
    return;
  }
  uint64_t pa = (uint64_t)sp_head * 4096 + 8 + sp_top * 8;
  wr(pa, (uint32_t)pfn);
  wr(pa + 4, (uint32_t)(pfn >> 32));
  sp_top++;
}
static int64_t sp_alloc(int order) {
  if (order != 0) return -1;
  int64_t h = sp_head;
  if (h < 0) return -1;
  if (sp_top == 0) { /* hand out the empty stack page itself */
    uint64_t pa = (uint64_t)h * 4096;
    uint32_t lo = rd(pa), hi = rd(pa + 4);
    sp_head = (int64_t)(((uint64_t)hi << 32) | lo);
    sp_top = sp_head < 0 ? 0 : PER_STACK_PAGE;
    return h;
  }
  sp_top--;
  uint64_t pa = (uint64_t)h * 4096 + 8 + sp_top * 8;
  uint32_t hi = rd(pa + 4);
  return (int64_t)(((uint64_t)hi << 32) | rd(pa));
}
static void sp_free(int64_t pfn, int order) {
  check_order0(pfn, order);
  sp_push((uint64_t)pfn);
}
static void sp_boot(int unused) {
  (void)unused;
  sp_head = -1;
  sp_top = 0;
  push_all(sp_push);
}

/* ---- design 3: intrusive free list (unchecked) --------------------------------------------------- */
static int64_t fl_head = -1;

static inline void fl_push(uint64_t pfn) {
  wr(pfn * 4096, (uint32_t)fl_head); /* -1 (empty) as all ones: the list's end */
  wr(pfn * 4096 + 4, (uint32_t)((uint64_t)fl_head >> 32));
  fl_head = (int64_t)pfn;
}
static int64_t fl_alloc(int order) {
  if (order != 0) return -1;
  int64_t pfn = fl_head;
  if (pfn < 0) return -1;
  uint64_t pa = (uint64_t)pfn * 4096;
  uint32_t hi = rd(pa + 4);
  fl_head = hi == 0xffffffffu ? -1 : (int64_t)(((uint64_t)hi << 32) | rd(pa));
  return pfn;
}
static void fl_free(int64_t pfn, int order) {
  check_order0(pfn, order);
  fl_push((uint64_t)pfn);
}
static void fl_boot(int unused) {
  (void)unused;
  fl_head = -1;
  push_all(fl_push);
}

/* ---- design 5: buddy ----------------------------------------------------------------------------- */
enum { NONE = 0, BUDDY = 1, ALLOC = 2, PCP = 3 };
static int pcp_on;
static uint64_t fa, pcp_pa, rec_pa;
static int64_t nfree;

static inline uint64_t rec(uint32_t idx) { return rec_pa + (uint64_t)idx * 16; }
static inline uint32_t batch_for(int k) { return (BATCH >> k) > 1 ? (uint32_t)(BATCH >> k) : 1; }

static void push(int mt, int o, uint32_t idx) {
  uint64_t head = fa + (uint64_t)(mt * NR_ORDERS + o) * 8;
  uint32_t h = rd(head);
  uint64_t r = rec(idx);
  wr(r, BUDDY | (o << 8) | (mt << 16));
  wr(r + 4, h);
  wr(r + 8, NIL);
  if (h != NIL) wr(rec(h) + 8, idx);
  wr(head, idx);
  wr(head + 4, rd(head + 4) + 1);
}
static void unlink_blk(int mt, int o, uint32_t idx) {
  uint64_t head = fa + (uint64_t)(mt * NR_ORDERS + o) * 8;
  uint64_t r = rec(idx);
  uint32_t n = rd(r + 4), p = rd(r + 8);
  if (p == NIL) wr(head, n);
  else wr(rec(p) + 4, n);
  if (n != NIL) wr(rec(n) + 8, p);
  wr(head + 4, rd(head + 4) - 1);
}
static uint32_t expand(uint32_t idx, uint64_t pfn, int o, int k, uint64_t target) {
  while (o > k) {
    o--;
    uint64_t half = 1ull << o;
    if (target >= half) {
      push(0, o, idx);
      idx += (uint32_t)half;
      pfn += half;
      target -= half;
    } else {
      push(0, o, idx + (uint32_t)half);
    }
  }
  return idx;
}
static int64_t take_block(int k) {
  for (int o = k; o <= MAX_ORDER; o++) {
    uint64_t head = fa + (uint64_t)o * 8;
    uint32_t idx = rd(head);
    if (idx == NIL) continue;
    uint32_t next = rd(rec(idx) + 4);
    wr(head, next);
    if (next != NIL) wr(rec(next) + 8, NIL);
    wr(head + 4, rd(head + 4) - 1);
    if (o == k) return idx;
    return expand(idx, RS + idx, o, k, 0);
  }
  return -1;
}
static void free_block(uint32_t idx, uint64_t pfn, int k) {
  while (k < MAX_ORDER) {
    uint64_t size = 1ull << k;
    uint64_t bpfn = pfn % (2 * size) == 0 ? pfn + size : pfn - size;
    if (bpfn < RS || bpfn + size > RE) break;
    uint32_t bidx = (uint32_t)(idx + (int64_t)(bpfn - pfn));
    uint32_t w = rd(rec(bidx));
    if ((w & 0xffff) != (uint32_t)(BUDDY | (k << 8))) break;
    unlink_blk((w >> 16) & 0xf, k, bidx);
    if (bpfn < pfn) {
      wr(rec(idx), NONE);
      idx = bidx;
      pfn = bpfn;
    } else {
      wr(rec(bidx), NONE);
    }
    k++;
  }
  push(0, k, idx);
}
static uint32_t refill(int k) {
  uint64_t pa = pcp_pa + (uint64_t)k * 8;
  uint32_t head = rd(pa), count = rd(pa + 4), n = batch_for(k), got = 0;
  for (; got < n; got++) {
    int64_t idx = take_block(k);
    if (idx < 0) break;
    uint64_t r = rec((uint32_t)idx);
    wr(r, PCP | (k << 8));
    wr(r + 4, head);
    head = (uint32_t)idx;
  }
  wr(pa, head);
  wr(pa + 4, count + got);
  return got;
}
static void drain(int k, uint32_t n) {
  uint64_t pa = pcp_pa + (uint64_t)k * 8;
  uint32_t head = rd(pa), count = rd(pa + 4);
  for (uint32_t i = 0; i < n && head != NIL; i++) {
    uint32_t idx = head;
    head = rd(rec(idx) + 4);
    count--;
    free_block(idx, RS + idx, k);
  }
  wr(pa, head);
  wr(pa + 4, count);
}
static int64_t drain_all(void) {
  if (!pcp_on) return 0;
  int64_t moved = 0;
  for (int k = 0; k < PCP_ORDERS; k++) {
    uint32_t count = rd(pcp_pa + (uint64_t)k * 8 + 4);
    if (count == 0) continue;
    drain(k, count);
    moved += (int64_t)count << k;
  }
  return moved;
}
static int64_t buddy_alloc(int k) {
  if (k == 0 && pcp_on) {
    uint64_t pa = pcp_pa;
    uint32_t count = rd(pa + 4);
    if (count != 0) {
      uint32_t idx = rd(pa);
      uint64_t r = rec(idx);
      wr(pa, rd(r + 4));
      wr(pa + 4, count - 1);
      wr(r, ALLOC);
      nfree--;
      return (int64_t)(RS + idx);
    }
  }
  if (k > MAX_ORDER) return -1;
  int64_t idx;
  if (pcp_on && k < PCP_ORDERS) {
    uint64_t pa = pcp_pa + (uint64_t)k * 8;
    if (rd(pa + 4) == 0 && refill(k) == 0) {
      drain_all();
      if (refill(k) == 0) return -1;
    }
    idx = rd(pa);
    wr(pa, rd(rec((uint32_t)idx) + 4));
    wr(pa + 4, rd(pa + 4) - 1);
  } else {
    idx = take_block(k);
    if (idx < 0 && drain_all() > 0) idx = take_block(k);
  }
  if (idx < 0) return -1;
  wr(rec((uint32_t)idx), ALLOC | (k << 8));
  nfree -= 1ll << k;
  return (int64_t)(RS + (uint64_t)idx);
}
static void buddy_free(int64_t pfn, int order) {
  if (pfn < (int64_t)RS || pfn >= (int64_t)RE || order < 0 || order > MAX_ORDER || pfn % (1ll << order)) bad((uint64_t)pfn);
  uint32_t idx = (uint32_t)(pfn - (int64_t)RS);
  uint64_t rp = rec(idx);
  if (rd(rp) != (uint32_t)(ALLOC | (order << 8))) bad((uint64_t)pfn);
  nfree += 1ll << order;
  if (pcp_on && order < PCP_ORDERS) {
    uint64_t pa = pcp_pa + (uint64_t)order * 8;
    wr(rp, PCP | (order << 8));
    wr(rp + 4, rd(pa));
    wr(pa, idx);
    uint32_t count = rd(pa + 4) + 1;
    wr(pa + 4, count);
    if (count > 6 * batch_for(order)) drain(order, batch_for(order));
    return;
  }
  free_block(idx, (uint64_t)pfn, order);
}
static void buddy_boot(int with_pcp) {
  mem_reset();
  pcp_on = with_pcp;
  uint64_t fa_bytes = NR_ORDERS * 8, pcp_bytes = with_pcp ? PCP_ORDERS * 8 : 0;
  uint64_t rec_off = (fa_bytes + pcp_bytes + 63) / 64 * 64;
  uint64_t total = (rec_off + (RE - RS) * 16 + 4095) / 4096 * 4096;
  uint64_t meta_start = RE - total / 4096; /* placed top-down, as setup.ts */
  fa = meta_start * 4096;
  pcp_pa = fa + fa_bytes;
  rec_pa = fa + rec_off;
  for (uint64_t off = 0; off < total; off += 4096) zero_frame((fa + off) / 4096);
  for (uint64_t i = 0; i < (fa_bytes + pcp_bytes) / 8; i++) wr(fa + i * 8, NIL);
  nfree = 0;
  for (uint64_t p = RS; p < meta_start;) {
    int o = MAX_ORDER;
    while (o > 0 && (p % (1ull << o) != 0 || p + (1ull << o) > meta_start)) o--;
    free_block((uint32_t)(p - RS), p, o);
    p += 1ull << o;
  }
  nfree = (int64_t)(meta_start - RS);
}

/* ---- runner -------------------------------------------------------------------------------------- */
static int32_t *tr;
static int32_t n_ops, n_slots, n_pairs;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef int64_t (*alloc_fn)(int);
typedef void (*free_fn)(int64_t, int);

static double replay(alloc_fn a, free_fn f, uint32_t *sum, long *failed) {
  int64_t *pfn = malloc(sizeof(int64_t) * (size_t)n_slots);
  int32_t *ord = malloc(sizeof(int32_t) * (size_t)n_slots);
  *sum = 0;
  *failed = 0;
  double t0 = now_ns();
  for (int32_t i = 0; i < n_ops; i++) {
    int32_t o = tr[2 * i], s = tr[2 * i + 1];
    if (o >= 0) {
      int64_t p = a(o);
      pfn[s] = p;
      ord[s] = o;
      if (p < 0) (*failed)++;
      else *sum += (uint32_t)p;
    } else if (pfn[s] >= 0) {
      f(pfn[s], ord[s]);
    }
  }
  double t = now_ns() - t0;
  free(pfn);
  free(ord);
  return t;
}

static void bench(const char *name, const char *trace, void (*boot)(int), int arg, alloc_fn a, free_fn f) {
  uint32_t sum;
  long failed;
  double best = 1e300;
  for (int r = 0; r < 3; r++) { /* the first run is a warm-up, as in the TypeScript bench */
    boot(arg);
    double t = replay(a, f, &sum, &failed);
    if (r > 0 && t < best) best = t;
  }
  printf("{\"design\":\"%s\",\"trace\":\"%s\",\"nsPerPair\":%.3f,\"pairsPerSec\":%.1f,\"checksum\":%u,\"failed\":%ld}\n", name,
         trace, best / n_pairs, n_pairs * 1e9 / best, sum, failed);
}

static void tight(const char *name, void (*boot)(int), int arg, alloc_fn a, free_fn f) {
  boot(arg);
  long n = 2000000;
  for (long i = 0; i < 200000; i++) f(a(0), 0);
  double t0 = now_ns();
  for (long i = 0; i < n; i++) f(a(0), 0);
  double ns = (now_ns() - t0) / n;
  printf("{\"design\":\"%s\",\"trace\":\"tight\",\"nsPerPair\":%.3f,\"pairsPerSec\":%.1f,\"checksum\":0,\"failed\":0}\n", name, ns,
         1e9 / ns);
}

static void stack_boot_arg(int unused) {
  (void)unused;
  stack_boot();
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s TRACE.bin TRACE_NAME START_PFN END_PFN\n", argv[0]);
    return 1;
  }
  FILE *fp = fopen(argv[1], "rb");
  if (!fp) return perror(argv[1]), 1;
  int32_t head[3];
  if (fread(head, 4, 3, fp) != 3) return 1;
  n_ops = head[0];
  n_slots = head[1];
  n_pairs = head[2];
  tr = malloc(sizeof(int32_t) * 2 * (size_t)n_ops);
  if (fread(tr, 4, 2 * (size_t)n_ops, fp) != 2 * (size_t)n_ops) return 1;
  fclose(fp);
  RS = strtoull(argv[3], NULL, 0);
  RE = strtoull(argv[4], NULL, 0);
  const char *t = argv[2];
  if (strcmp(t, "order0") == 0) {
    bench("stack-unchecked", t, stack_boot_arg, 0, stack_alloc, stack_free);
    bench("stack-pages-unchecked", t, sp_boot, 0, sp_alloc, sp_free);
    bench("freelist-unchecked", t, fl_boot, 0, fl_alloc, fl_free);
  }
  bench("buddy", t, buddy_boot, 1, buddy_alloc, buddy_free);
  bench("buddy-nopcp", t, buddy_boot, 0, buddy_alloc, buddy_free);
  if (strcmp(t, "order0") == 0) {
    tight("stack-unchecked", stack_boot_arg, 0, stack_alloc, stack_free);
    tight("stack-pages-unchecked", sp_boot, 0, sp_alloc, sp_free);
    tight("freelist-unchecked", fl_boot, 0, fl_alloc, fl_free);
    tight("buddy", buddy_boot, 1, buddy_alloc, buddy_free);
  }
  fprintf(stderr, "references: %llu reads, %llu writes\n", (unsigned long long)mem_reads, (unsigned long long)mem_writes);
  return 0;
}
